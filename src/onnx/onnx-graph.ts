// Editing an ONNX graph: who produces and who consumes each value, which graph inputs a value's data comes from,
// fresh names, cloning nodes, adding inputs, initializers and nodes, and a stable topological sort at the end, so
// that a rewritten graph is as valid as the one it came from. Whole-graph passes: renaming every name (to merge
// graphs), pruning what no output needs.
import type { GraphProto, NodeProto, TensorProto, ValueInfoProto } from './onnx-proto.js';

/** Operators whose outputs describe their input's shape, not its data. */
const SHAPE_OPERATORS = new Set(['Shape', 'Size']);

export function isShapeOperator(node: NodeProto): boolean {
  return SHAPE_OPERATORS.has(node.op_type ?? '') && (node.domain ?? '') === '';
}

/** The subgraphs of a node's attributes (If, Loop, Scan bodies). */
export function subgraphsOf(node: NodeProto): GraphProto[] {
  return (node.attribute ?? []).flatMap((entry) => [...(entry.g !== undefined ? [entry.g] : []), ...(entry.graphs ?? [])]);
}

/** Names a graph uses from its enclosing scopes: read by its nodes (or nested subgraphs) but not defined in it. */
export function outerReferences(graph: GraphProto): Set<string> {
  const defined = new Set<string>([...(graph.input ?? []).map((info) => info.name ?? ''), ...(graph.initializer ?? []).map((tensor) => tensor.name ?? '')]);
  const used = new Set<string>();
  for (const node of graph.node ?? []) {
    for (const name of nodeInputs(node)) if (!defined.has(name)) used.add(name);
    for (const name of node.output ?? []) defined.add(name);
  }
  return used;
}

/** The values a node reads: its explicit inputs (without the empty names of omitted optional inputs) and the names
 * its subgraphs use from the enclosing graph. */
export function nodeInputs(node: NodeProto): string[] {
  const explicit = (node.input ?? []).filter((name) => name !== '');
  const subgraphs = subgraphsOf(node);
  if (subgraphs.length === 0) return explicit;
  return [...new Set([...explicit, ...subgraphs.flatMap((graph) => [...outerReferences(graph)])])];
}

export class GraphEditor {
  private readonly producers = new Map<string, NodeProto>();
  private readonly consumerLists = new Map<string, NodeProto[]>();
  private readonly initializers = new Map<string, TensorProto>();
  private readonly inputs = new Set<string>();
  private readonly names = new Set<string>();
  /** Sort keys: existing nodes by position, added nodes just after the node they were placed after. */
  private readonly ranks = new Map<NodeProto, number>();
  private added = 0;

  constructor(readonly graph: GraphProto) {
    graph.node ??= [];
    graph.initializer ??= [];
    graph.input ??= [];
    graph.output ??= [];
    for (const tensor of graph.initializer) {
      this.initializers.set(tensor.name ?? '', tensor);
      this.names.add(tensor.name ?? '');
    }
    for (const info of graph.input) {
      if (!this.initializers.has(info.name ?? '')) this.inputs.add(info.name ?? '');
      this.names.add(info.name ?? '');
    }
    graph.node.forEach((node, index) => {
      this.ranks.set(node, index);
      this.index(node);
    });
  }

  private index(node: NodeProto): void {
    if (node.name) this.names.add(node.name);
    for (const output of node.output ?? []) {
      if (output === '') continue;
      if (this.producers.has(output)) throw new Error(`value ${output} is produced twice (${this.producers.get(output)!.name} and ${node.name})`);
      this.producers.set(output, node);
      this.names.add(output);
    }
    this.addConsumer(node);
  }

  private addConsumer(node: NodeProto): void {
    for (const input of nodeInputs(node)) {
      const list = this.consumerLists.get(input);
      if (list === undefined) this.consumerLists.set(input, [node]);
      else if (!list.includes(node)) list.push(node);
    }
  }

  producer(value: string): NodeProto | undefined {
    return this.producers.get(value);
  }

  consumers(value: string): readonly NodeProto[] {
    return this.consumerLists.get(value) ?? [];
  }

  initializer(name: string): TensorProto | undefined {
    return this.initializers.get(name);
  }

  /** A graph input that is not an initializer: data fed at run time. */
  isRuntimeInput(name: string): boolean {
    return this.inputs.has(name);
  }

  graphInput(name: string): ValueInfoProto | undefined {
    return this.graph.input!.find((info) => info.name === name);
  }

  hasName(name: string): boolean {
    return this.names.has(name);
  }

  private isDefined(name: string): boolean {
    return this.producers.has(name) || this.initializers.has(name) || this.inputs.has(name);
  }

  /** `base` if no value, node or initializer has that name yet, otherwise `base_1`, `base_2`, ...; reserved on return. */
  uniqueName(base: string): string {
    let name = base;
    for (let counter = 1; this.names.has(name); counter++) name = `${base}_${counter}`;
    this.names.add(name);
    return name;
  }

  addInput(info: ValueInfoProto): void {
    const name = info.name ?? '';
    if (this.isDefined(name)) throw new Error(`cannot add input ${name}: the graph already defines that name`);
    this.graph.input!.push(info);
    this.inputs.add(name);
    this.names.add(name);
  }

  addInitializer(tensor: TensorProto): void {
    const name = tensor.name ?? '';
    if (this.isDefined(name)) throw new Error(`cannot add initializer ${name}: the graph already defines that name`);
    this.graph.initializer!.push(tensor);
    this.initializers.set(name, tensor);
    this.names.add(name);
  }

  /** Adds a node, placed after `after` (or at the end) until finish() sorts the graph. Returns the node. */
  addNode(node: NodeProto, after?: NodeProto): NodeProto {
    this.added += 1;
    const base = after === undefined ? this.graph.node!.length : this.ranks.get(after);
    if (base === undefined) throw new Error(`node ${after?.name} is not in the graph`);
    this.ranks.set(node, base + this.added * 1e-9);
    this.graph.node!.push(node);
    this.index(node);
    return node;
  }

  /**
   * Adds a copy of `node` reading `inputs` (same count as the original's explicit inputs), with fresh output and node
   * names built from the originals and `suffix`; placed after the original. Returns the copy; its outputs are in the
   * same order as the original's.
   */
  cloneNode(node: NodeProto, inputs: string[], suffix: string): NodeProto {
    if (subgraphsOf(node).length > 0) throw new Error(`cannot clone ${node.op_type} node ${node.name}: it has subgraphs`);
    const clone: NodeProto = {
      ...node,
      input: inputs,
      output: (node.output ?? []).map((output) => (output === '' ? '' : this.uniqueName(`${output}${suffix}`))),
      name: this.uniqueName(`${node.name || node.op_type}${suffix}`),
    };
    return this.addNode(clone, node);
  }

  /** Makes `node` read `inputs` (its explicit inputs, in order). */
  setInputs(node: NodeProto, inputs: string[]): void {
    for (const input of nodeInputs(node)) {
      const list = this.consumerLists.get(input) ?? [];
      const at = list.indexOf(node);
      if (at >= 0) list.splice(at, 1);
    }
    node.input = inputs;
    this.addConsumer(node);
  }

  /** Makes `node` read `replacement` where it read `value`. */
  replaceInput(node: NodeProto, value: string, replacement: string): void {
    this.setInputs(node, (node.input ?? []).map((input) => (input === value ? replacement : input)));
  }

  /**
   * For every value: the runtime inputs its data comes from, as a bit mask (bit i: the i-th runtime input in
   * runtimeInputNames()). Initializers and constants depend on nothing, and neither do shapes (outputs of Shape and
   * Size): a value computed only from another value's shape is as good as a constant for whoever clones the data.
   */
  dataDependencies(): Map<string, bigint> {
    const dependencies = new Map<string, bigint>();
    this.runtimeInputNames().forEach((name, bit) => dependencies.set(name, 1n << BigInt(bit)));
    for (const name of this.initializers.keys()) if (!this.inputs.has(name)) dependencies.set(name, 0n);
    for (const node of this.graph.node!) {
      let mask = 0n;
      if (!isShapeOperator(node)) {
        for (const input of nodeInputs(node)) {
          const inputMask = dependencies.get(input);
          if (inputMask === undefined) throw new Error(`node ${node.name} reads ${input} before anything defines it: the graph is not topologically sorted`);
          mask |= inputMask;
        }
      }
      for (const output of node.output ?? []) if (output !== '') dependencies.set(output, mask);
    }
    return dependencies;
  }

  runtimeInputNames(): string[] {
    return [...this.inputs];
  }

  /** Orders the nodes so that each comes after the producers of what it reads, keeping the current order (and added
   * nodes next to where they were placed) wherever that is already so. */
  finish(): void {
    const nodes = this.graph.node!;
    const rank = (node: NodeProto) => this.ranks.get(node) ?? Number.MAX_SAFE_INTEGER;
    const waiting = new Map<NodeProto, number>();
    const ready = new MinHeap<NodeProto>((a, b) => rank(a) - rank(b));
    for (const node of nodes) {
      const pending = new Set(nodeInputs(node).filter((input) => this.producers.has(input))).size;
      waiting.set(node, pending);
      if (pending === 0) ready.push(node);
    }
    const sorted: NodeProto[] = [];
    for (let node = ready.pop(); node !== undefined; node = ready.pop()) {
      sorted.push(node);
      for (const output of new Set(node.output ?? [])) {
        if (output === '') continue;
        for (const consumer of this.consumers(output)) {
          const left = waiting.get(consumer)! - 1;
          waiting.set(consumer, left);
          if (left === 0) ready.push(consumer);
        }
      }
    }
    if (sorted.length !== nodes.length) throw new Error(`the graph has a cycle through ${nodes.length - sorted.length} nodes`);
    nodes.splice(0, nodes.length, ...sorted);
    sorted.forEach((node, index) => this.ranks.set(node, index));
    this.added = 0;
  }
}

/** A binary heap; pop() returns the least element by `compare`. */
class MinHeap<T> {
  private readonly items: T[] = [];
  constructor(private readonly compare: (a: T, b: T) => number) {}

  push(item: T): void {
    const items = this.items;
    items.push(item);
    for (let index = items.length - 1; index > 0; ) {
      const parent = (index - 1) >> 1;
      if (this.compare(items[index]!, items[parent]!) >= 0) break;
      [items[index], items[parent]] = [items[parent]!, items[index]!];
      index = parent;
    }
  }

  pop(): T | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length > 0 && last !== undefined) {
      items[0] = last;
      for (let index = 0; ; ) {
        const left = 2 * index + 1;
        const right = left + 1;
        let least = index;
        if (left < items.length && this.compare(items[left]!, items[least]!) < 0) least = left;
        if (right < items.length && this.compare(items[right]!, items[least]!) < 0) least = right;
        if (least === index) break;
        [items[index], items[least]] = [items[least]!, items[index]!];
        index = least;
      }
    }
    return top;
  }
}

/** True when every node reads only graph inputs, initializers and outputs of nodes before it. */
export function isTopologicallySorted(graph: GraphProto): boolean {
  const defined = new Set<string>([...(graph.input ?? []), ...(graph.initializer ?? [])].map((value) => value.name ?? ''));
  for (const node of graph.node ?? []) {
    if (nodeInputs(node).some((input) => !defined.has(input))) return false;
    for (const output of node.output ?? []) defined.add(output);
  }
  return true;
}

/**
 * Renames every value and node of `graph` and of its subgraphs with `rename` (which must be one-to-one): node inputs,
 * outputs and names, initializers, inputs, outputs and value infos.
 */
export function renameGraph(graph: GraphProto, rename: (name: string) => string): void {
  const renameValue = (name: string) => (name === '' ? '' : rename(name));
  for (const node of graph.node ?? []) {
    node.input = (node.input ?? []).map(renameValue);
    node.output = (node.output ?? []).map(renameValue);
    if (node.name) node.name = rename(node.name);
    for (const subgraph of subgraphsOf(node)) renameGraph(subgraph, rename);
  }
  for (const tensor of graph.initializer ?? []) tensor.name = renameValue(tensor.name ?? '');
  for (const sparse of graph.sparse_initializer ?? []) if (sparse.values !== undefined) sparse.values.name = renameValue(sparse.values.name ?? '');
  for (const info of [...(graph.input ?? []), ...(graph.output ?? []), ...(graph.value_info ?? [])]) info.name = renameValue(info.name ?? '');
  if ((graph.quantization_annotation ?? []).length > 0) throw new Error('renaming graphs with quantization annotations is not supported');
}

/** Removes the nodes, initializers and value infos that no graph output needs. Inputs stay (they are the graph's
 * signature). Returns how many nodes were removed. */
export function pruneUnused(graph: GraphProto): number {
  const producers = new Map<string, NodeProto>();
  for (const node of graph.node ?? []) for (const output of node.output ?? []) producers.set(output, node);
  const needed = new Set<string>();
  const keep = new Set<NodeProto>();
  const stack = (graph.output ?? []).map((info) => info.name ?? '');
  for (let name = stack.pop(); name !== undefined; name = stack.pop()) {
    if (needed.has(name)) continue;
    needed.add(name);
    const node = producers.get(name);
    if (node !== undefined && !keep.has(node)) {
      keep.add(node);
      stack.push(...nodeInputs(node));
    }
  }
  const before = graph.node?.length ?? 0;
  graph.node = (graph.node ?? []).filter((node) => keep.has(node));
  const inputs = new Set((graph.input ?? []).map((info) => info.name ?? ''));
  graph.initializer = (graph.initializer ?? []).filter((tensor) => needed.has(tensor.name ?? '') || inputs.has(tensor.name ?? ''));
  if (graph.value_info !== undefined) graph.value_info = graph.value_info.filter((info) => needed.has(info.name ?? ''));
  return before - graph.node.length;
}
