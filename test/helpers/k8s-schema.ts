// Offline checks of Kubernetes manifests: the Kubernetes OpenAPI schema (kubernetes-models' validators: types,
// formats, required fields, enums) and the fields Kubernetes knows (@kubernetes/client-node's generated models; the
// schema validators accept unknown fields, the API server with strict field validation does not), plus the
// "restricted" Pod Security Standard the snoopi namespace enforces.
import * as k8s from '@kubernetes/client-node';
import { ConfigMap, Namespace, PersistentVolumeClaim, Service, ServiceAccount } from 'kubernetes-models/v1';
import { Deployment } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { Job } from 'kubernetes-models/batch/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';

/** A parsed manifest: plain data, read by path in the tests. */
export type Manifest = Record<string, any>;

const models: Record<string, new (data: any) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/ConfigMap': ConfigMap,
  'v1/PersistentVolumeClaim': PersistentVolumeClaim,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'batch/v1/Job': Job,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
};

/** Throws with the schema's messages (e.g. "data/spec/replicas must be integer") when the manifest is invalid. */
export function validateManifest(manifest: Manifest): void {
  const Model = models[`${manifest.apiVersion}/${manifest.kind}`];
  if (Model === undefined) throw new Error(`no schema here for ${manifest.apiVersion} ${manifest.kind}`);
  new Model(manifest).validate();
}

interface Attribute {
  baseName: string;
  type: string;
}

const modelTypes = k8s as unknown as Record<string, { attributeTypeMap?: Attribute[] } | undefined>;

function fieldProblems(value: unknown, type: string, path: string, out: string[]): void {
  if (value === null || value === undefined) return;
  const array = /^Array<(.+)>$/.exec(type);
  if (array !== null) {
    if (Array.isArray(value)) value.forEach((item, i) => fieldProblems(item, array[1]!, `${path}[${i}]`, out));
    return;
  }
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map !== null) {
    for (const [key, item] of Object.entries(value as object)) fieldProblems(item, map[1]!, `${path}.${key}`, out);
    return;
  }
  const attributes = modelTypes[type]?.attributeTypeMap;
  if (attributes === undefined || typeof value !== 'object') return;
  for (const [key, item] of Object.entries(value)) {
    const attribute = attributes.find((candidate) => candidate.baseName === key);
    const at = path === '' ? key : `${path}.${key}`;
    if (attribute === undefined) out.push(at);
    else fieldProblems(item, attribute.type, at, out);
  }
}

/** The paths of the fields that the object's Kubernetes type does not have (typos like livenesProbe). */
export function unknownFields(manifest: Manifest): string[] {
  const version = String(manifest.apiVersion).split('/').at(-1)!;
  const type = `${version[0]!.toUpperCase()}${version.slice(1)}${manifest.kind}`;
  if (modelTypes[type]?.attributeTypeMap === undefined) throw new Error(`no model ${type} in @kubernetes/client-node`);
  const out: string[] = [];
  fieldProblems(manifest, type, '', out);
  return out;
}

/** What a pod spec lacks for the "restricted" Pod Security Standard (empty: it passes). */
export function podSecurityProblems(pod: Manifest): string[] {
  const problems: string[] = [];
  const context = pod.securityContext ?? {};
  if (context.runAsNonRoot !== true) problems.push('runAsNonRoot is not true');
  if (context.runAsUser === 0) problems.push('runAsUser is 0');
  if (context.seccompProfile?.type !== 'RuntimeDefault') problems.push('seccompProfile is not RuntimeDefault');
  if (pod.hostNetwork === true || pod.hostPID === true || pod.hostIPC === true) problems.push('uses a host namespace');
  for (const volume of pod.volumes ?? []) if (volume.hostPath !== undefined) problems.push(`volume ${volume.name} is a hostPath`);
  for (const container of [...(pod.initContainers ?? []), ...(pod.containers ?? [])]) {
    const security = container.securityContext ?? {};
    if (security.allowPrivilegeEscalation !== false) problems.push(`container ${container.name}: allowPrivilegeEscalation is not false`);
    if (security.privileged === true) problems.push(`container ${container.name}: privileged`);
    if (JSON.stringify(security.capabilities?.drop) !== '["ALL"]') problems.push(`container ${container.name}: capabilities are not dropped`);
    if ((security.capabilities?.add ?? []).length > 0) problems.push(`container ${container.name}: adds capabilities`);
    if (security.runAsUser === 0) problems.push(`container ${container.name}: runAsUser is 0`);
  }
  return problems;
}
