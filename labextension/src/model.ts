/**
 * The sidebar's state: the deployment list polled from the server, the expanded
 * deployments' details, drift verdicts and actions in progress. No JupyterLab imports,
 * so the refresh and diff logic is unit-tested with jest.
 */
import {
  Action,
  ApiError,
  IAlertState,
  IDeploymentDetail,
  IDeploymentSummary,
  IReproduce
} from './api';

/** What the model needs from NbdeployClient (a fake in tests). */
export interface IClient {
  list(): Promise<IDeploymentSummary[]>;
  detail(name: string): Promise<IDeploymentDetail>;
  drift(name: string): Promise<Record<string, any>>;
  act(name: string, action: Action, version?: number): Promise<Record<string, any>>;
}

export type Tone = 'ok' | 'busy' | 'warn' | 'error' | 'idle';

/** How a status is shown: its label and a colour tone. */
export interface IBadge {
  label: string;
  tone: Tone;
  className: string;
}

const TONES: Record<string, [string, Tone]> = {
  serving: ['serving', 'ok'],
  passed: ['passed', 'ok'],
  starting: ['starting', 'busy'],
  candidate: ['validating', 'busy'],
  down: ['down', 'error'],
  failed: ['failed', 'error'],
  rejected: ['rejected', 'error'],
  interrupted: ['interrupted', 'warn'],
  stopped: ['stopped', 'idle'],
  ready: ['ready', 'idle'],
  retired: ['retired', 'idle']
};

/** Map a server status (serving, down, stopped, rejected …) to its badge. */
export function statusBadge(status: string | null | undefined): IBadge {
  const key = (status ?? '').toLowerCase();
  const [label, tone] = TONES[key] ?? [key || 'unknown', 'idle'];
  return { label, tone, className: `nbd-badge nbd-badge-${tone}` };
}

/** The drift verdict in a drift report ("drift", "no drift", "insufficient data"), if any. */
export function driftVerdict(report: Record<string, any> | null | undefined): string | null {
  if (!report || typeof report !== 'object') {
    return null;
  }
  for (const key of ['verdict', 'status', 'state']) {
    if (typeof report[key] === 'string') {
      return report[key];
    }
  }
  if (typeof report.drifted === 'boolean') {
    return report.drifted ? 'drift' : 'no drift';
  }
  if (Array.isArray(report.drifted)) {
    return report.drifted.length ? 'drift' : 'no drift';
  }
  return null;
}

/** The alert badge of a deployment: null without rules, else "ok" or "N alerts" and a tone. */
export function alertBadge(state: IAlertState | null | undefined): IBadge & { title: string } | null {
  if (!state || !state.rules) {
    return null;
  }
  const rules = `${state.rules} alert rule${state.rules === 1 ? '' : 's'}`;
  if (state.firing === null || state.firing === undefined) {
    const title = `${rules}; not evaluated: ${state.error ?? 'unknown error'}`;
    return { label: 'alerts ?', tone: 'warn', className: 'nbd-badge nbd-badge-warn nbd-alerts', title };
  }
  if (state.firing === 0) {
    return { label: 'alerts ok', tone: 'ok', className: 'nbd-badge nbd-badge-ok nbd-alerts', title: `${rules}, none firing` };
  }
  const label = `${state.firing} alert${state.firing === 1 ? '' : 's'}`;
  const title = [`${rules}, ${state.firing} firing:`, ...state.messages].join('\n');
  return { label, tone: 'error', className: 'nbd-badge nbd-badge-error nbd-alerts', title };
}

/** "reproduced exactly" / "reproduce: differs (…)" for a stored reproduce verdict, with a tone. */
export function reproduceLabel(result: IReproduce | null | undefined): { text: string; tone: Tone } | null {
  if (!result || typeof result.verdict !== 'string') {
    return null;
  }
  const tone: Tone = result.status === 'exact' || result.status === 'within-tolerance' ? 'ok' : 'error';
  const changed = result.notebook_changed ? ' (notebook changed since deploy)' : '';
  return { text: `reproduce: ${result.verdict}${changed}`, tone };
}

/** The confirmation text of an action on a deployment (optionally on one version). */
export function confirmText(dep: IDeploymentSummary, action: Action, version?: number): string {
  const v = version ?? dep.version;
  switch (action) {
    case 'stop':
      return `Stop the server of ${dep.name} v${v}? Clients of ${dep.endpoint ?? 'its endpoint'} get no answer until it is started again.`;
    case 'start':
      return `Start the server of ${dep.name} v${v} on this machine?`;
    case 'promote':
      return `Serve ${dep.name} v${v} instead of v${dep.serving_version ?? '?'}? The old version's server stops once v${v} answers.`;
    case 'rollback':
      return `Roll ${dep.name} back from v${dep.serving_version ?? '?'} to its previous good version?`;
  }
}

/** Render a traffic split {"3": 90, "4": 10} as "v3 90% · v4 10%" (null when none). */
export function formatSplit(split: Record<string, number> | null | undefined): string | null {
  if (!split || typeof split !== 'object') {
    return null;
  }
  const parts = Object.entries(split)
    .filter(([, weight]) => typeof weight === 'number')
    .sort(([a], [b]) => Number(a) - Number(b))
    .map(([version, weight]) => `v${version} ${weight}%`);
  return parts.length > 1 ? parts.join(' · ') : null;
}

/** A compact local time for a Unix timestamp in seconds: "2026-11-25 08:33" ("—" if none). */
export function formatTime(ts: number | null | undefined): string {
  if (!ts) {
    return '—';
  }
  const d = new Date(ts * 1000);
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}`;
}

/** Names added, removed and changed between two listings. */
export interface IDiff {
  added: string[];
  removed: string[];
  changed: string[];
}

const WATCHED: Array<keyof IDeploymentSummary> = [
  'status',
  'state',
  'version',
  'serving_version',
  'endpoint',
  'reason',
  'split',
  'shadow_version',
  'alerts'
];

/** Compare two listings by name on the fields the sidebar shows. */
export function diffDeployments(
  previous: IDeploymentSummary[],
  next: IDeploymentSummary[]
): IDiff {
  const before = new Map(previous.map(d => [d.name, d]));
  const after = new Map(next.map(d => [d.name, d]));
  const added = next.filter(d => !before.has(d.name)).map(d => d.name);
  const removed = previous.filter(d => !after.has(d.name)).map(d => d.name);
  const changed = next
    .filter(d => before.has(d.name))
    .filter(d => {
      const old = before.get(d.name)!;
      return WATCHED.some(key => JSON.stringify(old[key]) !== JSON.stringify(d[key]));
    })
    .map(d => d.name);
  return { added, removed, changed };
}

/** True when a diff holds any change. */
export function isEmptyDiff(diff: IDiff): boolean {
  return !diff.added.length && !diff.removed.length && !diff.changed.length;
}

/** The drift verdict shown for one deployment. */
export interface IDriftState {
  verdict: string | null;
  error: string | null;
  checkedAt: number;
}

export interface IModelOptions {
  /** Milliseconds between polls (default 3000). */
  interval?: number;
  /** Milliseconds between drift checks of one deployment (default 60000). */
  driftInterval?: number;
  /** Clock, replaceable in tests. */
  now?: () => number;
}

/** Polls the server and tells its listeners when what the sidebar shows changed. */
export class DeploymentsModel {
  deployments: IDeploymentSummary[] = [];
  error: string | null = null;
  loaded = false;
  selected: string | null = null;
  readonly expanded = new Set<string>();
  readonly details = new Map<string, IDeploymentDetail>();
  readonly drift = new Map<string, IDriftState>();
  /** null: not asked yet; false: the server answered 501. */
  driftAvailable: boolean | null = null;
  readonly busy = new Map<string, string>();

  private readonly listeners = new Set<() => void>();
  private readonly interval: number;
  private readonly driftInterval: number;
  private readonly now: () => number;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private inflight: Promise<IDiff> | null = null;
  private disposed = false;

  constructor(
    private readonly client: IClient,
    options: IModelOptions = {}
  ) {
    this.interval = options.interval ?? 3000;
    this.driftInterval = options.driftInterval ?? 60000;
    this.now = options.now ?? (() => Date.now());
  }

  /** Call `fn` after every visible change; returns the unsubscribe function. */
  subscribe(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(): void {
    for (const fn of [...this.listeners]) {
      fn();
    }
  }

  /** The deployment the palette commands act on: the selected one, else the only one. */
  current(): IDeploymentSummary | null {
    const byName = this.deployments.find(d => d.name === this.selected);
    if (byName) {
      return byName;
    }
    return this.deployments.length === 1 ? this.deployments[0] : null;
  }

  select(name: string | null): void {
    if (this.selected !== name) {
      this.selected = name;
      this.emit();
    }
  }

  /** Fetch the list once (concurrent calls share one request); emit only on change. */
  refresh(): Promise<IDiff> {
    if (!this.inflight) {
      this.inflight = this.doRefresh().finally(() => {
        this.inflight = null;
      });
    }
    return this.inflight;
  }

  private async doRefresh(): Promise<IDiff> {
    const empty: IDiff = { added: [], removed: [], changed: [] };
    let next: IDeploymentSummary[];
    try {
      next = await this.client.list();
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (message !== this.error || !this.loaded) {
        this.error = message;
        this.loaded = true;
        this.emit();
      }
      return empty;
    }
    const diff = diffDeployments(this.deployments, next);
    const firstLoad = !this.loaded;
    const hadError = this.error !== null;
    this.deployments = next;
    this.loaded = true;
    this.error = null;
    for (const name of diff.removed) {
      this.expanded.delete(name);
      this.details.delete(name);
      this.drift.delete(name);
      if (this.selected === name) {
        this.selected = null;
      }
    }
    const details = await Promise.all(
      [...this.expanded].map(name => this.loadDetail(name, false).catch(() => false))
    );
    const driftChanged = await this.checkDrift();
    if (firstLoad || hadError || !isEmptyDiff(diff) || details.includes(true) || driftChanged) {
      this.emit();
    }
    return diff;
  }

  /** Fetch one deployment's versions and validation results; true when they changed. */
  async loadDetail(name: string, notify = true): Promise<boolean> {
    const before = JSON.stringify(this.details.get(name) ?? null);
    try {
      this.details.set(name, await this.client.detail(name));
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) {
        this.details.delete(name);
      } else {
        throw error;
      }
    }
    const changed = JSON.stringify(this.details.get(name) ?? null) !== before;
    if (notify && changed) {
      this.emit();
    }
    return changed;
  }

  /** Expand or collapse a deployment (loading its detail on expand). */
  async toggle(name: string): Promise<void> {
    this.select(name);
    if (this.expanded.has(name)) {
      this.expanded.delete(name);
      this.emit();
      return;
    }
    this.expanded.add(name);
    this.emit();
    await this.loadDetail(name).catch(error => {
      this.error = error instanceof Error ? error.message : String(error);
      this.emit();
    });
  }

  /** Ask for drift verdicts older than driftInterval (unless unsupported); true on change. */
  async checkDrift(): Promise<boolean> {
    if (this.driftAvailable === false) {
      return false;
    }
    let changed = false;
    const due = this.deployments.filter(d => {
      const seen = this.drift.get(d.name);
      return !seen || this.now() - seen.checkedAt >= this.driftInterval;
    });
    for (const dep of due) {
      try {
        const report = await this.client.drift(dep.name);
        this.driftAvailable = true;
        const verdict = driftVerdict(report);
        changed = changed || this.drift.get(dep.name)?.verdict !== verdict;
        this.drift.set(dep.name, { verdict, error: null, checkedAt: this.now() });
      } catch (error) {
        if (error instanceof ApiError && error.unavailable) {
          this.driftAvailable = false;
          this.drift.clear();
          return true;
        }
        const message = error instanceof Error ? error.message : String(error);
        changed = changed || this.drift.get(dep.name)?.error !== message;
        this.drift.set(dep.name, { verdict: null, error: message, checkedAt: this.now() });
      }
    }
    return changed;
  }

  /** Run an action, then refresh the list and the deployment's detail. */
  async act(name: string, action: Action, version?: number): Promise<Record<string, any>> {
    if (this.busy.has(name)) {
      throw new Error(`${this.busy.get(name)} of ${name} is still running`);
    }
    this.busy.set(name, action);
    this.emit();
    try {
      return await this.client.act(name, action, version);
    } finally {
      this.busy.delete(name);
      await this.refresh();
      if (this.expanded.has(name)) {
        await this.loadDetail(name, false).catch(() => undefined);
      }
      this.emit();
    }
  }

  /** Poll every `interval` ms until stop() or dispose(). */
  start(): void {
    if (this.timer !== null || this.disposed) {
      return;
    }
    const tick = async (): Promise<void> => {
      await this.refresh().catch(() => undefined);
      if (!this.disposed && this.timer !== null) {
        this.timer = setTimeout(tick, this.interval);
      }
    };
    this.timer = setTimeout(tick, 0);
  }

  stop(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  get isPolling(): boolean {
    return this.timer !== null;
  }

  dispose(): void {
    this.disposed = true;
    this.stop();
    this.listeners.clear();
  }
}
