/**
 * The Deployments sidebar: one row per deployment (status badge, endpoint, split, drift),
 * expandable to its versions with lineage and validation results, with confirmed actions.
 */
import { Dialog, showDialog, showErrorMessage } from '@jupyterlab/apputils';
import { ReactWidget } from '@jupyterlab/ui-components';
import { Message } from '@lumino/messaging';
import * as React from 'react';

import { Action, IDeploymentSummary, IValidationRun, IVersion } from './api';
import { alertBadge, confirmText, DeploymentsModel, formatSplit, formatTime, reproduceLabel, statusBadge } from './model';

const LABELS: Record<Action, string> = {
  start: 'Start',
  stop: 'Stop',
  promote: 'Promote',
  rollback: 'Rollback'
};

/** Ask for confirmation, run the action and show any error in a dialog. */
async function confirmAndRun(
  model: DeploymentsModel,
  dep: IDeploymentSummary,
  action: Action,
  version?: number
): Promise<void> {
  const label = LABELS[action];
  const result = await showDialog({
    title: `${label} ${dep.name}${version === undefined ? '' : ` v${version}`}`,
    body: confirmText(dep, action, version),
    buttons: [Dialog.cancelButton(), Dialog.warnButton({ label })]
  });
  if (!result.button.accept) {
    return;
  }
  try {
    await model.act(dep.name, action, version);
  } catch (error) {
    await showErrorMessage(`${label} ${dep.name} failed`, error instanceof Error ? error.message : String(error));
  }
}

/** Re-render when the model says something visible changed. */
function useModel(model: DeploymentsModel): void {
  const [, setTick] = React.useState(0);
  React.useEffect(() => model.subscribe(() => setTick(t => t + 1)), [model]);
}

function Badge({ status }: { status: string }): JSX.Element {
  const badge = statusBadge(status);
  return (
    <span className={badge.className} data-status={status} title={status}>
      {badge.label}
    </span>
  );
}

function basename(path: string | null | undefined): string {
  return path ? path.split(/[\\/]/).pop() || path : '—';
}

function formatMetric(value: unknown): string {
  if (typeof value === 'number') {
    return Number.isInteger(value) ? String(value) : value.toPrecision(3);
  }
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

function Button(props: { label: string; onClick: () => void; disabled?: boolean; title?: string }): JSX.Element {
  return (
    <button
      className="nbd-action"
      data-action={props.label.toLowerCase()}
      disabled={props.disabled}
      title={props.title ?? props.label}
      onClick={event => {
        event.stopPropagation();
        props.onClick();
      }}
    >
      {props.label}
    </button>
  );
}

function ValidationRuns({ runs, validation }: { runs: IValidationRun[]; validation: Record<string, any> | null }): JSX.Element {
  if (!runs.length) {
    const status = validation && typeof validation.status === 'string' ? validation.status : null;
    return <div className="nbd-muted">{status ? `validation: ${status}` : 'no validation notebooks'}</div>;
  }
  return (
    <ul className="nbd-runs">
      {runs.map((run, i) => (
        <li key={i} className="nbd-run" title={run.reason ?? run.notebook}>
          <span className={`${statusBadge(run.status).className} nbd-run-status`}>{run.status}</span>
          <span className="nbd-run-name">{basename(run.notebook)}</span>
          {Object.entries(run.metrics ?? {}).map(([key, value]) => (
            <span key={key} className="nbd-metric">
              {key}={formatMetric(value)}
            </span>
          ))}
        </li>
      ))}
    </ul>
  );
}

function VersionRow(props: { model: DeploymentsModel; dep: IDeploymentSummary; version: IVersion }): JSX.Element {
  const { model, dep, version } = props;
  const lineage = version.lineage ?? {};
  const isServing = version.version === dep.serving_version;
  const live = version.status === 'serving' || version.status === 'starting';
  const canPromote = !isServing && (version.state === 'ready' || version.state === 'serving');
  const busy = model.busy.has(dep.name);
  const reproduce = reproduceLabel(version.reproduce);
  return (
    <li className="nbd-version" data-version={version.version}>
      <div className="nbd-version-head">
        <span className="nbd-version-number">v{version.version}</span>
        <Badge status={version.status} />
        {isServing && (
          <span className="nbd-tag" title="the version the deployment serves">
            current
          </span>
        )}
        <span className="nbd-spacer" />
        {live && <Button label="Stop" disabled={busy} onClick={() => void confirmAndRun(model, dep, 'stop', version.version)} />}
        {!live && isServing && (
          <Button label="Start" disabled={busy} onClick={() => void confirmAndRun(model, dep, 'start', version.version)} />
        )}
        {canPromote && <Button label="Promote" disabled={busy} onClick={() => void confirmAndRun(model, dep, 'promote', version.version)} />}
      </div>
      {version.reason && <div className="nbd-reason">{version.reason}</div>}
      <dl className="nbd-lineage">
        <dt>created</dt>
        <dd title={new Date(version.created_at * 1000).toString()}>{formatTime(version.created_at)}</dd>
        <dt>by</dt>
        <dd>{version.created_by}</dd>
        <dt>notebook</dt>
        <dd title={lineage.notebook ?? ''}>{basename(lineage.notebook)}</dd>
        <dt>git</dt>
        <dd title={lineage.git_commit ?? ''}>{lineage.git_commit ? String(lineage.git_commit).slice(0, 10) : '—'}</dd>
        <dt>data</dt>
        <dd title={lineage.data_fingerprint ?? ''}>
          {lineage.data_rows ?? '?'} rows{lineage.data_fingerprint ? ` · ${String(lineage.data_fingerprint).slice(0, 10)}` : ''}
        </dd>
      </dl>
      {reproduce && (
        <div className={`nbd-reproduce nbd-reproduce-${reproduce.tone}`} title={version.reproduce?.notebook ?? ''}>
          {reproduce.text}
        </div>
      )}
      <ValidationRuns runs={version.validation_runs ?? []} validation={version.validation} />
    </li>
  );
}

function DeploymentRow({ model, dep }: { model: DeploymentsModel; dep: IDeploymentSummary }): JSX.Element {
  const expanded = model.expanded.has(dep.name);
  const detail = model.details.get(dep.name);
  const split = formatSplit(dep.split);
  const drift = model.drift.get(dep.name);
  const busy = model.busy.get(dep.name);
  const live = dep.status === 'serving' || dep.status === 'starting';
  const selected = model.selected === dep.name;
  const alerts = alertBadge(dep.alerts);
  return (
    <li className={`nbd-deployment${selected ? ' nbd-selected' : ''}`} data-deployment={dep.name}>
      <div className="nbd-deployment-head" onClick={() => void model.toggle(dep.name)} title="Show versions">
        <span className="nbd-caret">{expanded ? '▾' : '▸'}</span>
        <span className="nbd-name">{dep.name}</span>
        <span className="nbd-serving-version" title="serving version">
          v{dep.serving_version ?? dep.version}
        </span>
        <Badge status={dep.status} />
        {alerts && (
          <span className={alerts.className} data-firing={dep.alerts?.firing ?? ''} title={alerts.title}>
            {alerts.label}
          </span>
        )}
        {busy && <span className="nbd-busy">{busy}…</span>}
      </div>
      <div className="nbd-deployment-info">
        {dep.endpoint ? (
          <a className="nbd-endpoint" href={dep.endpoint} target="_blank" rel="noopener noreferrer">
            {dep.endpoint}
          </a>
        ) : (
          <span className="nbd-muted">no endpoint</span>
        )}
        {split && <span className="nbd-split">split {split}</span>}
        {drift?.verdict && (
          <span className={`nbd-drift ${drift.verdict === 'drift' ? 'nbd-drift-alert' : ''}`}>drift: {drift.verdict}</span>
        )}
        {dep.reason && <span className="nbd-reason">{dep.reason}</span>}
      </div>
      <div className="nbd-actions">
        {live ? (
          <Button label="Stop" disabled={!!busy} onClick={() => void confirmAndRun(model, dep, 'stop')} />
        ) : (
          <Button label="Start" disabled={!!busy} onClick={() => void confirmAndRun(model, dep, 'start')} />
        )}
        <Button label="Rollback" disabled={!!busy} onClick={() => void confirmAndRun(model, dep, 'rollback')} />
      </div>
      {expanded && (
        <ul className="nbd-versions">
          {detail ? (
            [...detail.versions].reverse().map(v => <VersionRow key={v.version} model={model} dep={dep} version={v} />)
          ) : (
            <li className="nbd-muted">loading…</li>
          )}
        </ul>
      )}
    </li>
  );
}

function DeploymentsView({ model }: { model: DeploymentsModel }): JSX.Element {
  useModel(model);
  return (
    <div className="nbd-view">
      <header className="nbd-header">
        <h2>Deployments</h2>
        <button className="nbd-refresh" title="Refresh deployments" onClick={() => void model.refresh()}>
          ⟳
        </button>
      </header>
      {model.error && <div className="nbd-error">{model.error}</div>}
      {!model.loaded && <div className="nbd-muted">loading…</div>}
      {model.loaded && !model.error && !model.deployments.length && (
        <div className="nbd-empty">
          Nothing is deployed yet. In a notebook run <code>%load_ext nbdeploy</code>, then <code>%deploy model --name my-model</code>.
        </div>
      )}
      <ul className="nbd-deployments">
        {model.deployments.map(dep => (
          <DeploymentRow key={dep.name} model={model} dep={dep} />
        ))}
      </ul>
    </div>
  );
}

/** The left-panel widget; it polls while it is visible. */
export class DeploymentsPanel extends ReactWidget {
  constructor(readonly model: DeploymentsModel) {
    super();
    this.id = 'nbdeploy-deployments';
    this.addClass('nbd-panel');
    this.title.caption = 'Deployments';
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.model.start();
  }

  protected onAfterHide(msg: Message): void {
    super.onAfterHide(msg);
    this.model.stop();
  }

  dispose(): void {
    this.model.dispose();
    super.dispose();
  }

  render(): JSX.Element {
    return <DeploymentsView model={this.model} />;
  }
}
