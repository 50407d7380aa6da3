import { ApiError, apiUrl, docsUrl, errorMessage, Fetcher, NbdeployClient, requestAPI } from '../src/api';

/** A fetcher that answers every request with one canned response and records calls. */
function fake(status: number, body: string, calls: Array<[string, RequestInit]> = []): Fetcher {
  return async (url, init) => {
    calls.push([url, init]);
    return new Response(body, { status, headers: { 'Content-Type': 'application/json' } });
  };
}

/** The ApiError a request fails with (the test fails if it succeeds). */
async function failure(call: Promise<unknown>): Promise<ApiError> {
  try {
    await call;
  } catch (error) {
    return error as ApiError;
  }
  throw new Error('expected the request to fail');
}

describe('apiUrl', () => {
  it('joins base URL and endpoint with exactly one slash', () => {
    expect(apiUrl('http://h/lab-base/', '/deployments')).toBe('http://h/lab-base/nbdeploy/api/deployments');
    expect(apiUrl('http://h/base', 'deployments/iris')).toBe('http://h/base/nbdeploy/api/deployments/iris');
  });
});

describe('docsUrl', () => {
  it("is the endpoint's root, where BentoML serves its Swagger UI", () => {
    expect(docsUrl('http://127.0.0.1:3000')).toBe('http://127.0.0.1:3000/');
    expect(docsUrl('http://127.0.0.1:3000//')).toBe('http://127.0.0.1:3000/');
  });
});

describe('errorMessage', () => {
  it('reads the error and field of a JSON error body', () => {
    expect(errorMessage(400, '{"error": "version must be an integer", "field": "version"}')).toEqual({
      message: 'version must be an integer',
      field: 'version'
    });
  });

  it('falls back to jupyter_server message bodies, then text, then the status', () => {
    expect(errorMessage(403, '{"message": "Forbidden"}').message).toBe('Forbidden');
    expect(errorMessage(502, 'Bad gateway').message).toBe('Bad gateway');
    expect(errorMessage(500, '').message).toBe('the server answered HTTP 500');
  });
});

describe('requestAPI', () => {
  it('returns the parsed JSON of a 2xx answer', async () => {
    const calls: Array<[string, RequestInit]> = [];
    const data = await requestAPI<{ deployments: unknown[] }>(fake(200, '{"deployments": []}', calls), 'http://h/', 'deployments');
    expect(data).toEqual({ deployments: [] });
    expect(calls[0][0]).toBe('http://h/nbdeploy/api/deployments');
  });

  it('throws ApiError with status, message and field on 4xx', async () => {
    const call = requestAPI(fake(400, '{"error": "version must be an integer, got \'x\'", "field": "version"}'), 'http://h/', 'x');
    await expect(call).rejects.toMatchObject({
      name: 'ApiError',
      status: 400,
      field: 'version',
      message: "version must be an integer, got 'x'"
    });
  });

  it('marks 501 as unavailable', async () => {
    const error = await failure(requestAPI(fake(501, '{"error": "drift is not available in this version"}'), 'http://h/', 'x'));
    expect(error).toBeInstanceOf(ApiError);
    expect(error.unavailable).toBe(true);
    expect(error.message).toBe('drift is not available in this version');
  });

  it('turns a network failure into ApiError with status 0', async () => {
    const broken: Fetcher = async () => {
      throw new TypeError('Failed to fetch');
    };
    const error = await failure(requestAPI(broken, 'http://h/', 'deployments'));
    expect(error).toBeInstanceOf(ApiError);
    expect(error.status).toBe(0);
    expect(error.message).toContain('Failed to fetch');
  });

  it('rejects a 2xx answer that is not JSON', async () => {
    await expect(requestAPI(fake(200, '<html>'), 'http://h/', 'deployments')).rejects.toThrow('invalid JSON');
  });
});

describe('NbdeployClient', () => {
  it('posts actions with the version in a JSON body and escapes names', async () => {
    const calls: Array<[string, RequestInit]> = [];
    const client = new NbdeployClient(fake(200, '{"ok": true}', calls), 'http://h/');
    await client.act('iris', 'promote', 2);
    await client.act('iris', 'rollback');
    await client.detail('a b');
    expect(calls[0][0]).toBe('http://h/nbdeploy/api/deployments/iris/promote');
    expect(calls[0][1].method).toBe('POST');
    expect(JSON.parse(calls[0][1].body as string)).toEqual({ version: 2 });
    expect(JSON.parse(calls[1][1].body as string)).toEqual({});
    expect(calls[2][0]).toBe('http://h/nbdeploy/api/deployments/a%20b');
  });
});

describe('NbdeployClient.alerts', () => {
  it('GETs the alerts route of the escaped name and returns its body', async () => {
    const calls: Array<[string, RequestInit]> = [];
    const body = { name: 'iris', rules: ['p99_ms>0'], firing: [], count: 0 };
    const client = new NbdeployClient(fake(200, JSON.stringify(body), calls), 'http://h/');
    expect(await client.alerts('my model')).toEqual(body);
    expect(calls[0][0]).toBe('http://h/nbdeploy/api/deployments/my%20model/alerts');
    expect(calls[0][1].method).toBe('GET');
  });
});
