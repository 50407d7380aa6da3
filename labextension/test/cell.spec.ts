import { deployCellSource, deploymentName, identifierAt, pickVariable } from '../src/cell';

describe('identifierAt', () => {
  const source = 'clf = LogisticRegression().fit(X_train, y)';

  it('finds the identifier around the cursor, at its start, middle and end', () => {
    expect(identifierAt(source, 0)).toBe('clf');
    expect(identifierAt(source, 2)).toBe('clf');
    expect(identifierAt(source, 3)).toBe('clf');
    expect(identifierAt(source, source.indexOf('X_train') + 4)).toBe('X_train');
  });

  it('returns null between words, on numbers and on keywords', () => {
    expect(identifierAt('a = 1', 2)).toBeNull();
    expect(identifierAt('x = 42', 5)).toBeNull();
    expect(identifierAt('import pandas', 2)).toBeNull();
    expect(identifierAt('', 0)).toBeNull();
  });
});

describe('pickVariable', () => {
  it('prefers a selected identifier and refuses a selected expression', () => {
    const source = 'best = search.best_estimator_';
    const start = source.indexOf('best_estimator_');
    expect(pickVariable(source, 0, 4)).toBe('best');
    expect(pickVariable(source, start - 7, source.length)).toBeNull();
    expect(pickVariable(source, start + 3, start + 3)).toBe('best_estimator_');
  });
});

describe('deployCellSource', () => {
  it('is the documented template without a variable, loading the magics first', () => {
    const template = '%load_ext nbdeploy\n%deploy model --name my-model --sample X_train';
    expect(deployCellSource()).toBe(template);
    expect(deployCellSource('1abc')).toBe(template);
  });

  it('starts with %load_ext nbdeploy so it runs in a fresh kernel', () => {
    expect(deployCellSource('clf').split('\n')[0]).toBe('%load_ext nbdeploy');
  });

  it('uses the variable and a valid name derived from it', () => {
    expect(deployCellSource('best_clf')).toBe('%load_ext nbdeploy\n%deploy best_clf --name best-clf --sample X_train');
    expect(deploymentName('__Model2__')).toBe('model2');
    expect(deploymentName('___')).toBe('my-model');
    expect(deploymentName('x'.repeat(80))).toHaveLength(63);
  });
});
