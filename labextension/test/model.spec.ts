import { ApiError, IDeploymentDetail, IDeploymentSummary } from '../src/api';
import {
  alertBadge,
  confirmText,
  DeploymentsModel,
  reproduceLabel,
  diffDeployments,
  driftVerdict,
  formatSplit,
  formatTime,
  IClient,
  statusBadge
} from '../src/model';

function summary(name: string, extra: Partial<IDeploymentSummary> = {}): IDeploymentSummary {
  return {
    name,
    version: 2,
    serving_version: 2,
    status: 'serving',
    state: 'serving',
    reason: null,
    endpoint: 'http://127.0.0.1:3000',
    framework: 'sklearn',
    task: 'classification',
    created_at: 1,
    created_by: 'tester',
    ...extra
  };
}

/** A scripted client: `lists` are answered in order (the last one repeats). */
class FakeClient implements IClient {
  lists: Array<IDeploymentSummary[] | Error> = [];
  driftAnswer: Record<string, any> | Error = { verdict: 'no drift' };
  calls: string[] = [];

  async list(): Promise<IDeploymentSummary[]> {
    this.calls.push('list');
    const next = this.lists.length > 1 ? this.lists.shift()! : this.lists[0];
    if (next instanceof Error) {
      throw next;
    }
    return next;
  }

  async detail(name: string): Promise<IDeploymentDetail> {
    this.calls.push(`detail ${name}`);
    return { name, summary: summary(name), serving_version: 2, split: null, versions: [], events: [] };
  }

  async drift(name: string): Promise<Record<string, any>> {
    this.calls.push(`drift ${name}`);
    if (this.driftAnswer instanceof Error) {
      throw this.driftAnswer;
    }
    return this.driftAnswer;
  }

  async act(name: string, action: string, version?: number): Promise<Record<string, any>> {
    this.calls.push(`${action} ${name} ${version ?? ''}`.trim());
    return { ok: true };
  }
}

describe('statusBadge', () => {
  it.each([
    ['serving', 'serving', 'ok'],
    ['passed', 'passed', 'ok'],
    ['starting', 'starting', 'busy'],
    ['candidate', 'validating', 'busy'],
    ['down', 'down', 'error'],
    ['rejected', 'rejected', 'error'],
    ['interrupted', 'interrupted', 'warn'],
    ['stopped', 'stopped', 'idle'],
    ['SERVING', 'serving', 'ok']
  ])('%s -> %s (%s)', (status, label, tone) => {
    const badge = statusBadge(status);
    expect(badge.label).toBe(label);
    expect(badge.tone).toBe(tone);
    expect(badge.className).toBe(`nbd-badge nbd-badge-${tone}`);
  });

  it('shows unknown states as they are, and a missing one as unknown', () => {
    expect(statusBadge('exotic')).toMatchObject({ label: 'exotic', tone: 'idle' });
    expect(statusBadge(undefined).label).toBe('unknown');
  });
});

describe('driftVerdict and formatSplit', () => {
  it('reads the verdict of a DriftReport-like dict', () => {
    expect(driftVerdict({ verdict: 'drift', drifted: ['a'] })).toBe('drift');
    expect(driftVerdict({ drifted: [] })).toBe('no drift');
    expect(driftVerdict({ drifted: true })).toBe('drift');
    expect(driftVerdict({})).toBeNull();
    expect(driftVerdict(null)).toBeNull();
  });

  it('formats a split by version and hides a single-version split', () => {
    expect(formatSplit({ '4': 10, '3': 90 })).toBe('v3 90% · v4 10%');
    expect(formatSplit({ '3': 100 })).toBeNull();
    expect(formatSplit(null)).toBeNull();
  });
});

describe('diffDeployments', () => {
  it('reports added, removed and changed names', () => {
    const before = [summary('a'), summary('b'), summary('c')];
    const after = [summary('a'), summary('b', { status: 'down' }), summary('d')];
    expect(diffDeployments(before, after)).toEqual({ added: ['d'], removed: ['c'], changed: ['b'] });
  });

  it('sees a changed serving version, split or endpoint, and ignores unwatched fields', () => {
    const base = [summary('a')];
    expect(diffDeployments(base, [summary('a', { serving_version: 1 })]).changed).toEqual(['a']);
    expect(diffDeployments(base, [summary('a', { split: { '1': 50, '2': 50 } })]).changed).toEqual(['a']);
    expect(diffDeployments(base, [summary('a', { endpoint: null })]).changed).toEqual(['a']);
    expect(diffDeployments(base, [summary('a', { created_at: 99 })]).changed).toEqual([]);
  });
});

describe('DeploymentsModel.refresh', () => {
  it('notifies on first load and on changes, not on identical polls', async () => {
    const client = new FakeClient();
    client.lists = [[summary('iris')], [summary('iris')], [summary('iris', { status: 'down' })]];
    const model = new DeploymentsModel(client);
    let notified = 0;
    model.subscribe(() => notified++);

    expect((await model.refresh()).added).toEqual(['iris']);
    expect(notified).toBe(1);
    await model.refresh();
    expect(notified).toBe(1);
    expect((await model.refresh()).changed).toEqual(['iris']);
    expect(notified).toBe(2);
    expect(model.deployments[0].status).toBe('down');
  });

  it('shares one request between concurrent refreshes', async () => {
    const client = new FakeClient();
    client.lists = [[summary('iris')]];
    const model = new DeploymentsModel(client, { driftInterval: 1e9 });
    await Promise.all([model.refresh(), model.refresh(), model.refresh()]);
    expect(client.calls.filter(c => c === 'list')).toHaveLength(1);
  });

  it('keeps the last list and shows the error when the server fails, then recovers', async () => {
    const client = new FakeClient();
    client.lists = [[summary('iris')], new ApiError('cannot reach the Jupyter server: down', 0), [summary('iris')]];
    const model = new DeploymentsModel(client);
    await model.refresh();
    await model.refresh();
    expect(model.error).toContain('cannot reach');
    expect(model.deployments.map(d => d.name)).toEqual(['iris']);
    await model.refresh();
    expect(model.error).toBeNull();
  });

  it('forgets the selection, expansion and detail of a removed deployment', async () => {
    const client = new FakeClient();
    client.lists = [[summary('iris'), summary('wine')], [summary('wine')]];
    const model = new DeploymentsModel(client);
    await model.refresh();
    await model.toggle('iris');
    expect(model.selected).toBe('iris');
    expect(model.details.has('iris')).toBe(true);
    await model.refresh();
    expect(model.selected).toBeNull();
    expect(model.expanded.has('iris')).toBe(false);
    expect(model.details.has('iris')).toBe(false);
    expect(model.current()?.name).toBe('wine');
  });
});

describe('DeploymentsModel drift', () => {
  it('stops asking for drift after a 501', async () => {
    const client = new FakeClient();
    client.lists = [[summary('iris'), summary('wine')]];
    client.driftAnswer = new ApiError('drift is not available in this version', 501);
    const model = new DeploymentsModel(client, { driftInterval: 0 });
    await model.refresh();
    await model.refresh();
    expect(client.calls.filter(c => c.startsWith('drift'))).toEqual(['drift iris']);
    expect(model.driftAvailable).toBe(false);
  });

  it('re-checks a verdict only after driftInterval', async () => {
    let clock = 0;
    const client = new FakeClient();
    client.lists = [[summary('iris')]];
    client.driftAnswer = { verdict: 'drift' };
    const model = new DeploymentsModel(client, { driftInterval: 1000, now: () => clock });
    await model.refresh();
    expect(model.drift.get('iris')?.verdict).toBe('drift');
    clock = 500;
    await model.refresh();
    clock = 1500;
    await model.refresh();
    expect(client.calls.filter(c => c.startsWith('drift'))).toHaveLength(2);
  });
});

describe('DeploymentsModel.act', () => {
  it('marks the deployment busy, refuses a second action, then refreshes', async () => {
    const client = new FakeClient();
    client.lists = [[summary('iris')]];
    const model = new DeploymentsModel(client, { driftInterval: 1e9 });
    await model.refresh();
    const first = model.act('iris', 'rollback');
    expect(model.busy.get('iris')).toBe('rollback');
    await expect(model.act('iris', 'stop')).rejects.toThrow('rollback of iris is still running');
    await first;
    expect(model.busy.size).toBe(0);
    expect(client.calls).toEqual(['list', 'drift iris', 'rollback iris', 'list']);
  });
});

describe('DeploymentsModel polling', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  it('polls every interval until stopped', async () => {
    const client = new FakeClient();
    client.lists = [[summary('iris')]];
    const model = new DeploymentsModel(client, { interval: 1000, driftInterval: 1e9 });
    model.start();
    await jest.advanceTimersByTimeAsync(0);
    await jest.advanceTimersByTimeAsync(1000);
    await jest.advanceTimersByTimeAsync(1000);
    expect(client.calls.filter(c => c === 'list')).toHaveLength(3);
    model.stop();
    expect(model.isPolling).toBe(false);
    await jest.advanceTimersByTimeAsync(5000);
    expect(client.calls.filter(c => c === 'list')).toHaveLength(3);
  });
});

describe('formatTime', () => {
  it('shows local date and minutes, and a dash for no time', () => {
    const ts = new Date(2026, 10, 5, 8, 3, 59).getTime() / 1000;
    expect(formatTime(ts)).toBe('2026-11-05 08:03');
    expect(formatTime(null)).toBe('—');
  });
});

describe('alertBadge', () => {
  it('is absent without rules', () => {
    expect(alertBadge(undefined)).toBeNull();
    expect(alertBadge({ rules: 0, firing: 0, messages: [] })).toBeNull();
  });

  it('is ok when no rule fires and an error badge counting the firing ones otherwise', () => {
    expect(alertBadge({ rules: 2, firing: 0, messages: [] })).toMatchObject({ label: 'alerts ok', tone: 'ok' });
    const one = alertBadge({ rules: 2, firing: 1, messages: ['v2 p99 latency (ms) 12 > 0 over 12 requests'] })!;
    expect(one.label).toBe('1 alert');
    expect(one.tone).toBe('error');
    expect(one.title).toContain('2 alert rules, 1 firing');
    expect(one.title).toContain('p99 latency');
    expect(alertBadge({ rules: 1, firing: 3, messages: [] })!.label).toBe('3 alerts');
  });

  it('warns when the rules could not be evaluated', () => {
    const badge = alertBadge({ rules: 1, firing: null, messages: [], error: 'log unreadable' })!;
    expect(badge.tone).toBe('warn');
    expect(badge.title).toContain('log unreadable');
  });
});

describe('reproduceLabel', () => {
  it('shows the stored verdict, ok for exact or within tolerance, error otherwise', () => {
    expect(reproduceLabel(null)).toBeNull();
    expect(reproduceLabel({ status: 'exact', verdict: 'exact' })).toEqual({ text: 'reproduce: exact', tone: 'ok' });
    expect(reproduceLabel({ status: 'within-tolerance', verdict: 'within tolerance (1e-9)' })!.tone).toBe('ok');
    const differs = reproduceLabel({ status: 'differs', verdict: 'differs (3 of 150 rows)', notebook_changed: true })!;
    expect(differs.tone).toBe('error');
    expect(differs.text).toBe('reproduce: differs (3 of 150 rows) (notebook changed since deploy)');
  });
});

describe('confirmText', () => {
  const dep = summary('iris', { version: 3, serving_version: 3, endpoint: 'http://127.0.0.1:3000' });

  it('names the deployment, the versions and the endpoint affected', () => {
    expect(confirmText(dep, 'stop')).toBe(
      'Stop the server of iris v3? Clients of http://127.0.0.1:3000 get no answer until it is started again.'
    );
    expect(confirmText(dep, 'promote', 5)).toBe(
      "Serve iris v5 instead of v3? The old version's server stops once v5 answers."
    );
    expect(confirmText(dep, 'rollback')).toBe('Roll iris back from v3 to its previous good version?');
    expect(confirmText(dep, 'start', 2)).toBe('Start the server of iris v2 on this machine?');
  });

  it('says "its endpoint" when there is none and "?" without a serving version', () => {
    const down = summary('iris', { endpoint: null, serving_version: null });
    expect(confirmText(down, 'stop', 1)).toContain('Clients of its endpoint');
    expect(confirmText(down, 'rollback')).toBe('Roll iris back from v? to its previous good version?');
  });
});

describe('diffDeployments on alerts', () => {
  it('reports a deployment whose alert count changed', () => {
    const before = [summary('iris', { alerts: { rules: 1, firing: 0, messages: [] } })];
    const after = [summary('iris', { alerts: { rules: 1, firing: 1, messages: ['x'] } })];
    expect(diffDeployments(before, after).changed).toEqual(['iris']);
  });
});
