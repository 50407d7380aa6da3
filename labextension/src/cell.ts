/**
 * The `%deploy` cell the notebook toolbar button inserts (pure functions, jest-tested).
 */

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;
const IDENT_CHAR = /[A-Za-z0-9_]/;
const KEYWORDS = new Set(
  (
    'False None True and as assert async await break class continue def del elif else except ' +
    'finally for from global if import in is lambda nonlocal not or pass raise return try ' +
    'while with yield print deploy'
  ).split(' ')
);

function isVariable(word: string): boolean {
  return IDENTIFIER.test(word) && !KEYWORDS.has(word);
}

/** The Python identifier around `offset` in `source` (or null), e.g. the variable under the cursor. */
export function identifierAt(source: string, offset: number): string | null {
  let start = Math.max(0, Math.min(offset, source.length));
  let end = start;
  while (start > 0 && IDENT_CHAR.test(source[start - 1])) {
    start--;
  }
  while (end < source.length && IDENT_CHAR.test(source[end])) {
    end++;
  }
  const word = source.slice(start, end);
  return isVariable(word) ? word : null;
}

/** A valid deployment name derived from a variable name: `best_model` → `best-model`. */
export function deploymentName(variable: string): string {
  const slug = variable
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 63)
    .replace(/-+$/g, '');
  return slug || 'my-model';
}

/**
 * The source of a ready-to-edit `%deploy` cell, for `variable` when it is an identifier.
 * It loads the magics first, so it also runs in a fresh kernel.
 */
export function deployCellSource(variable?: string | null): string {
  const chosen = variable && isVariable(variable.trim()) ? variable.trim() : null;
  const model = chosen ?? 'model';
  const name = chosen ? deploymentName(chosen) : 'my-model';
  return `%load_ext nbdeploy\n%deploy ${model} --name ${name} --sample X_train`;
}

/** The variable to deploy: the selected text if it is an identifier, else the word at the cursor. */
export function pickVariable(source: string, selectionStart: number, selectionEnd: number): string | null {
  if (selectionEnd > selectionStart) {
    const selected = source.slice(selectionStart, selectionEnd).trim();
    return isVariable(selected) ? selected : null;
  }
  return identifierAt(source, selectionStart);
}
