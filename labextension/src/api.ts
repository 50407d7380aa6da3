/**
 * The nbdeploy REST client: JSON requests to /nbdeploy/api/ with errors as ApiError.
 *
 * Pure TypeScript (no JupyterLab runtime import) so jest can test it with a fake fetch;
 * index.ts passes a fetcher built on ServerConnection.makeRequest.
 */

/** The part of `fetch` the client needs (ServerConnection.makeRequest fits). */
export type Fetcher = (url: string, init: RequestInit) => Promise<Response>;

/** An HTTP or network failure, with the server's message and the field it blames. */
export class ApiError extends Error {
  readonly status: number;
  readonly field: string | null;

  constructor(message: string, status: number, field: string | null = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.field = field;
  }

  /** True when the server does not offer this feature (HTTP 501). */
  get unavailable(): boolean {
    return this.status === 501;
  }
}

/** Join the server base URL and an endpoint under nbdeploy/api. */
export function apiUrl(baseUrl: string, endpoint: string): string {
  const base = baseUrl.endsWith('/') ? baseUrl : baseUrl + '/';
  const tail = endpoint.replace(/^\/+/, '');
  return `${base}nbdeploy/api/${tail}`;
}

/** The API docs page of a BentoML endpoint (its Swagger UI is served at the root). */
export function docsUrl(endpoint: string): string {
  return endpoint.replace(/\/+$/, '') + '/';
}

/** Pull a readable message out of an error body ({"error"}, {"message"} or text). */
export function errorMessage(status: number, text: string): { message: string; field: string | null } {
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (data && typeof data === 'object') {
    const message = data.error ?? data.message ?? data.reason;
    if (typeof message === 'string' && message) {
      return { message, field: typeof data.field === 'string' ? data.field : null };
    }
  }
  const snippet = text.trim().slice(0, 200);
  return { message: snippet || `the server answered HTTP ${status}`, field: null };
}

/** Send one request and return its JSON body; throw ApiError on any failure. */
export async function requestAPI<T>(
  fetcher: Fetcher,
  baseUrl: string,
  endpoint: string,
  init: RequestInit = {}
): Promise<T> {
  let response: Response;
  try {
    response = await fetcher(apiUrl(baseUrl, endpoint), init);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new ApiError(`cannot reach the Jupyter server: ${reason}`, 0);
  }
  const text = await response.text();
  if (!response.ok) {
    const { message, field } = errorMessage(response.status, text);
    throw new ApiError(message, response.status, field);
  }
  if (!text) {
    return {} as T;
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new ApiError(`the server sent invalid JSON for ${endpoint}`, response.status);
  }
}

/** One deployment as listed by GET deployments. */
export interface IDeploymentSummary {
  name: string;
  version: number;
  serving_version: number | null;
  status: string;
  state: string;
  reason: string | null;
  endpoint: string | null;
  framework: string;
  task: string;
  created_at: number;
  created_by: string;
  split?: Record<string, number> | null;
  shadow_version?: number | null;
  alerts?: IAlertState | null;
}

/** The alert state in the list: how many rules, how many fire now (null: not evaluated). */
export interface IAlertState {
  rules: number;
  firing: number | null;
  messages: string[];
  error?: string;
}

/** GET deployments/{name}/alerts. */
export interface IAlerts {
  name: string;
  rules: string[];
  firing: Array<{ rule: string; version: number | null; value: number; message: string; severity: string }>;
  count: number;
}

/** The stored verdict of `nbdeploy reproduce` (lineage.reproduce). */
export interface IReproduce {
  status: string;
  verdict: string;
  notebook?: string;
  at?: number;
  max_abs_diff?: number | null;
  notebook_changed?: boolean;
}

/** One executed validation notebook of a version. */
export interface IValidationRun {
  notebook: string;
  status: string;
  reason: string | null;
  metrics: Record<string, unknown> | null;
  duration_s: number;
  role: string;
}

/** One version in GET deployments/{name}. */
export interface IVersion {
  version: number;
  status: string;
  state: string;
  reason: string | null;
  created_at: number;
  created_by: string;
  framework: string;
  endpoint: string | null;
  lineage: Record<string, any> | null;
  validation: Record<string, any> | null;
  validation_runs: IValidationRun[];
  reproduce?: IReproduce | null;
}

/** GET deployments/{name}. */
export interface IDeploymentDetail {
  name: string;
  summary: IDeploymentSummary;
  serving_version: number | null;
  split: Record<string, number> | null;
  alerts?: IAlertState | null;
  versions: IVersion[];
  events: Array<{ ts: number; user: string; action: string; version: number | null }>;
}

export type Action = 'start' | 'stop' | 'promote' | 'rollback';

/** The calls the sidebar makes. */
export class NbdeployClient {
  constructor(
    private readonly fetcher: Fetcher,
    private readonly baseUrl: string
  ) {}

  private get<T>(endpoint: string): Promise<T> {
    return requestAPI<T>(this.fetcher, this.baseUrl, endpoint, { method: 'GET' });
  }

  /** Every deployment with its serving version and live status. */
  async list(): Promise<IDeploymentSummary[]> {
    const data = await this.get<{ deployments: IDeploymentSummary[] }>('deployments');
    return data.deployments ?? [];
  }

  /** Versions, lineage, validation runs and recent events of one deployment. */
  detail(name: string): Promise<IDeploymentDetail> {
    return this.get(`deployments/${encodeURIComponent(name)}`);
  }

  /** Drift report (ApiError with status 501 when the server has no drift support). */
  drift(name: string): Promise<Record<string, any>> {
    return this.get(`deployments/${encodeURIComponent(name)}/drift`);
  }

  /** The alert rules of a deployment and the alerts firing now. */
  alerts(name: string): Promise<IAlerts> {
    return this.get(`deployments/${encodeURIComponent(name)}/alerts`);
  }

  /** start/stop/promote/rollback, optionally for one version. */
  act(name: string, action: Action, version?: number): Promise<Record<string, any>> {
    const body = version === undefined ? {} : { version };
    return requestAPI(this.fetcher, this.baseUrl, `deployments/${encodeURIComponent(name)}/${action}`, {
      method: 'POST',
      body: JSON.stringify(body)
    });
  }
}
