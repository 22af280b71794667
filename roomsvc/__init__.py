"""roomsvc: a real-time multiplayer room coordinator speaking the GPGS games/v1 REST shapes."""

__version__ = "0.1.0"
