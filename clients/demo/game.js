// The rules of tic-tac-toe, pure: no DOM, no network. A game is its list of moves (cells 0..8);
// players take turns, the first mover is X.
const LINES = [
  [0, 1, 2], [3, 4, 5], [6, 7, 8], [0, 3, 6], [1, 4, 7], [2, 5, 8], [0, 4, 8], [2, 4, 6],
];

export function board(moves) {
  const cells = Array(9).fill(null);
  moves.forEach((cell, i) => { cells[cell] = i % 2 === 0 ? "X" : "O"; });
  return cells;
}

/** "X" or "O" when a line is complete, "draw" when the board is full, else null. */
export function outcome(moves) {
  const cells = board(moves);
  for (const [a, b, c] of LINES) {
    if (cells[a] && cells[a] === cells[b] && cells[a] === cells[c]) return cells[a];
  }
  return moves.length === 9 ? "draw" : null;
}

/** The mark whose turn it is. */
export function toMove(moves) {
  return moves.length % 2 === 0 ? "X" : "O";
}

export function canPlay(moves, cell) {
  return outcome(moves) === null && Number.isInteger(cell) && cell >= 0 && cell < 9
    && !moves.includes(cell);
}

/**
 * Which participant plays X in game number `game`: the two participant ids sorted, taking
 * turns from game to game, so both tabs agree without a message.
 */
export function markOf(participantId, players, game) {
  const sorted = [...players].sort();
  const x = sorted[game % 2];
  return participantId === x ? "X" : "O";
}
