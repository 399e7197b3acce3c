// A Kubernetes API server on 127.0.0.1 that implements the few calls of the kubernetes runner, on real sockets:
// create / read status / delete a batch/v1 Job, list pods by label, and read a pod's log (with follow, timestamps
// and sinceTime). The test plays the cluster: it adds the Job's pod, appends log lines and ends the Job.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { KubeConfig, type V1Job, type V1JobCondition } from '@kubernetes/client-node';

export interface FakePod {
  name: string;
  jobId: string;
  phase: 'Pending' | 'Running' | 'Succeeded' | 'Failed';
  created: string;
  /** The completion index of an Indexed Job's pod. */
  index?: number;
  /** "<RFC3339Nano timestamp> <text>" */
  lines: string[];
  /** Open log streams that follow this pod. */
  followers: Set<{ response: ServerResponse; sent: number }>;
}

export class FakeKubernetes {
  readonly jobs = new Map<string, V1Job>();
  readonly pods = new Map<string, FakePod>();
  /** "METHOD /path?query" of every request, in order. */
  readonly requests: string[] = [];
  readonly authorizations = new Set<string>();
  /** When set, creating a Job answers this status and message. */
  refuseCreate: { status: number; message: string } | undefined;
  /** When set, a followed log stream is cut after this many lines (the client library's "closes prematurely"). */
  cutLogAfter: number | undefined;
  private clock = 0;
  private server!: Server;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((request, response) => this.handle(request, response));
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  kubeConfig(namespace = 'snoopi'): KubeConfig {
    const config = new KubeConfig();
    config.loadFromOptions({
      clusters: [{ name: 'fake', server: this.url, skipTLSVerify: true }],
      users: [{ name: 'runner', token: 'service-account-token' }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'runner', namespace }],
      currentContext: 'fake',
    });
    return config;
  }

  /** The scheduler: the Job's pod appears, running. */
  addPod(jobId: string, name: string, phase: FakePod['phase'] = 'Running', index?: number): FakePod {
    const created = new Date(Date.UTC(2026, 0, 1, 0, 0, this.pods.size)).toISOString();
    const pod: FakePod = { name, jobId, phase, created, lines: [], followers: new Set(), ...(index === undefined ? {} : { index }) };
    this.pods.set(name, pod);
    return pod;
  }

  /** The trainer prints lines; each gets a timestamp one second after the previous one (nanosecond precision). */
  print(pod: FakePod, ...texts: string[]): void {
    for (const text of texts) {
      this.clock++;
      const seconds = String(this.clock % 60).padStart(2, '0');
      const minutes = String(Math.floor(this.clock / 60)).padStart(2, '0');
      pod.lines.push(`2026-01-01T00:${minutes}:${seconds}.${String(this.clock).padStart(9, '0')}Z ${text}`);
    }
    for (const follower of pod.followers) this.flush(pod, follower);
  }

  /** The container exits: followed logs end, the pod's phase is final. */
  endPod(pod: FakePod, phase: 'Succeeded' | 'Failed'): void {
    pod.phase = phase;
    for (const follower of pod.followers) follower.response.end();
    pod.followers.clear();
  }

  /** The Job controller sets a final condition. */
  endJob(name: string, condition: V1JobCondition): void {
    const job = this.jobs.get(name)!;
    job.status = { ...job.status, conditions: [condition], ...(condition.type === 'Complete' ? { succeeded: 1 } : { failed: 1 }) };
  }

  private flush(pod: FakePod, follower: { response: ServerResponse; sent: number }): void {
    while (follower.sent < pod.lines.length) {
      follower.response.write(`${pod.lines[follower.sent++]}\n`);
      if (this.cutLogAfter !== undefined && follower.sent >= this.cutLogAfter) {
        this.cutLogAfter = undefined;
        pod.followers.delete(follower);
        follower.response.end();
        return;
      }
    }
  }

  private json(response: ServerResponse, status: number, body: unknown): void {
    response.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  }

  private status(response: ServerResponse, code: number, reason: string, message: string): void {
    this.json(response, code, { kind: 'Status', apiVersion: 'v1', status: 'Failure', message, reason, code });
  }

  private handle(request: IncomingMessage, response: ServerResponse): void {
    const url = new URL(request.url!, this.url);
    this.requests.push(`${request.method} ${url.pathname}${url.search}`);
    if (request.headers.authorization !== undefined) this.authorizations.add(request.headers.authorization);
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = chunks.length > 0 ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined;
      this.route(request.method!, url, body, response);
    });
  }

  private route(method: string, url: URL, body: V1Job | undefined, response: ServerResponse): void {
    let match: RegExpExecArray | null;
    if (method === 'POST' && /^\/apis\/batch\/v1\/namespaces\/[^/]+\/jobs$/.test(url.pathname)) {
      if (this.refuseCreate !== undefined) return this.status(response, this.refuseCreate.status, 'Forbidden', this.refuseCreate.message);
      const job: V1Job = { ...body!, metadata: { ...body!.metadata, uid: `uid-${this.jobs.size}` }, status: {} };
      this.jobs.set(job.metadata!.name!, job);
      return this.json(response, 201, job);
    }
    if ((match = /^\/apis\/batch\/v1\/namespaces\/[^/]+\/jobs\/([^/]+)(\/status)?$/.exec(url.pathname))) {
      const job = this.jobs.get(match[1]!);
      if (job === undefined) return this.status(response, 404, 'NotFound', `jobs.batch "${match[1]}" not found`);
      if (method === 'GET') return this.json(response, 200, job);
      if (method === 'DELETE') {
        this.jobs.delete(match[1]!);
        for (const pod of this.pods.values()) if (pod.jobId === job.metadata!.labels!['snoopi.dev/job-id']) this.endPod(pod, 'Failed');
        return this.json(response, 200, { kind: 'Status', apiVersion: 'v1', status: 'Success' });
      }
    }
    if (method === 'GET' && /^\/api\/v1\/namespaces\/[^/]+\/pods$/.test(url.pathname)) {
      const [key, value] = (url.searchParams.get('labelSelector') ?? '').split('=');
      const items = [...this.pods.values()]
        .filter((pod) => key === 'snoopi.dev/job-id' && pod.jobId === value)
        .map((pod) => ({
          metadata: {
            name: pod.name,
            creationTimestamp: pod.created,
            labels: { 'snoopi.dev/job-id': pod.jobId, ...(pod.index === undefined ? {} : { 'batch.kubernetes.io/job-completion-index': String(pod.index) }) },
          },
          status: { phase: pod.phase },
        }));
      return this.json(response, 200, { kind: 'PodList', apiVersion: 'v1', metadata: {}, items });
    }
    if (method === 'GET' && (match = /^\/api\/v1\/namespaces\/[^/]+\/pods\/([^/]+)\/log$/.exec(url.pathname))) {
      const pod = this.pods.get(match[1]!);
      if (pod === undefined) return this.status(response, 404, 'NotFound', `pods "${match[1]}" not found`);
      // The API's sinceTime counts whole seconds: lines of that second come again.
      const since = url.searchParams.get('sinceTime');
      const sinceSecond = since === null ? '' : since.slice(0, 19);
      const lines = pod.lines.filter((line) => line.slice(0, 19) >= sinceSecond);
      response.writeHead(200, { 'content-type': 'text/plain' }).flushHeaders();
      const follower = { response, sent: 0 };
      const view: FakePod = { ...pod, lines };
      this.flush(view, follower);
      if (url.searchParams.get('follow') !== 'true' || pod.phase === 'Succeeded' || pod.phase === 'Failed' || response.writableEnded) {
        return void response.end();
      }
      // Later lines of the pod reach this follower from print(); it starts after the lines it has.
      const live = { response, sent: pod.lines.length };
      pod.followers.add(live);
      response.on('close', () => pod.followers.delete(live));
      return;
    }
    this.status(response, 404, 'NotFound', `no route ${method} ${url.pathname}`);
  }
}
