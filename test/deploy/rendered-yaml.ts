/**
 * Reads what `helm template` prints for deploy/helm/weir into plain objects. No YAML parser
 * is among weir's dependencies and helm 3 has no JSON output for `template`, so this reads
 * the subset the chart's templates produce: `---` documents, block mappings and sequences
 * (with `- key: value` items, and go-yaml's sequences at their key's indent), plain, single-
 * and double-quoted scalars, `|` and `|-` block scalars, `{}` / `[]` and flat flow
 * sequences of scalars, and comments. Anything else (anchors, tags, folded scalars, nested
 * flow collections) throws naming the line, so a template that grows past the subset fails
 * the test rather than being misread.
 *
 * @example
 * const objects = parseHelmOutput(stdout) // [{ apiVersion: 'apps/v1', kind: 'StatefulSet', … }, …]
 */

export type YamlValue = string | number | boolean | null | YamlValue[] | { [key: string]: YamlValue }

/** The documents of a multi-document stream, each parsed; documents with only comments are left out. */
export function parseHelmOutput(text: string): Array<Record<string, YamlValue>> {
  const docs: string[][] = [[]]
  for (const line of text.split('\n')) {
    if (/^---\s*$/.test(line)) docs.push([])
    else docs[docs.length - 1]!.push(line)
  }
  const out: Array<Record<string, YamlValue>> = []
  for (const lines of docs) {
    const value = new SubsetParser(lines).parseDocument()
    if (value === null) continue
    if (typeof value !== 'object' || Array.isArray(value)) throw new Error(`a document is not a mapping: ${JSON.stringify(value)}`)
    out.push(value)
  }
  return out
}

const KEY = /^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*'|[^\s"'#\-{[][^:]*?|-[^\s:][^:]*?)\s*:(?:\s+(.*))?$/

function indentOf(line: string): number {
  return line.length - line.trimStart().length
}

function significant(line: string): boolean {
  const t = line.trim()
  return t !== '' && !t.startsWith('#')
}

class SubsetParser {
  private pos = 0

  constructor(private readonly lines: string[]) {}

  parseDocument(): YamlValue {
    const next = this.next()
    if (next === undefined) return null
    const value = this.parseNode(indentOf(this.lines[next]!))
    const rest = this.next()
    if (rest !== undefined) this.fail(rest, 'unexpected text after the document')
    return value
  }

  /** The index of the next line with content (skipping blank and comment lines), not consumed. */
  private next(): number | undefined {
    while (this.pos < this.lines.length && !significant(this.lines[this.pos]!)) this.pos++
    return this.pos < this.lines.length ? this.pos : undefined
  }

  private fail(line: number, why: string): never {
    throw new Error(`rendered YAML line ${line + 1} (${JSON.stringify(this.lines[line])}): ${why}`)
  }

  private isItem(line: string): boolean {
    const t = line.trimStart()
    return t === '-' || t.startsWith('- ')
  }

  private parseNode(indent: number): YamlValue {
    const i = this.next()
    if (i === undefined || indentOf(this.lines[i]!) < indent) return null
    return this.isItem(this.lines[i]!) ? this.parseSequence(indentOf(this.lines[i]!)) : this.parseMapping(indentOf(this.lines[i]!))
  }

  private parseMapping(indent: number): Record<string, YamlValue> {
    const map: Record<string, YamlValue> = {}
    for (let i = this.next(); i !== undefined; i = this.next()) {
      const line = this.lines[i]!
      const lineIndent = indentOf(line)
      if (lineIndent < indent) break
      if (lineIndent > indent) this.fail(i, `indented deeper than its mapping (${indent})`)
      if (this.isItem(line)) break
      const m = KEY.exec(line.trim())
      if (m === null) this.fail(i, 'not a key: value line')
      const key = this.scalar(m[1]!, i)
      if (typeof key !== 'string' && typeof key !== 'number' && typeof key !== 'boolean') this.fail(i, 'a key must be a scalar')
      const name = String(key)
      if (Object.hasOwn(map, name)) this.fail(i, `duplicate key ${name}`)
      this.pos = i + 1
      map[name] = this.valueAfterKey(m[2] ?? '', indent, i)
    }
    return map
  }

  /** What follows `key:` on line i: a scalar, a block scalar, or a nested node on the next lines. */
  private valueAfterKey(rest: string, indent: number, i: number): YamlValue {
    const inline = rest.replace(/\s+#.*$/, '').trim()
    if (inline === '' || inline.startsWith('#')) {
      const j = this.next()
      if (j === undefined) return null
      const childIndent = indentOf(this.lines[j]!)
      // go-yaml writes a sequence at its key's indent.
      if (childIndent > indent || (childIndent === indent && this.isItem(this.lines[j]!))) return this.parseNode(childIndent)
      return null
    }
    if (/^[|>]/.test(inline)) return this.blockScalar(inline, indent, i)
    return this.scalar(rest, i)
  }

  private parseSequence(indent: number): YamlValue[] {
    const items: YamlValue[] = []
    for (let i = this.next(); i !== undefined; i = this.next()) {
      const line = this.lines[i]!
      if (indentOf(line) !== indent || !this.isItem(line)) {
        if (indentOf(line) > indent) this.fail(i, `indented deeper than its sequence (${indent})`)
        break
      }
      const content = line.trimStart().slice(1)
      if (content.trim() === '' || content.trim().startsWith('#')) {
        this.pos = i + 1
        items.push(this.parseNode(indent + 1))
      } else if (KEY.test(content.trim())) {
        // `- key: value` opens a mapping whose keys line up with `key`: blank the dash and read it there.
        this.lines[i] = `${' '.repeat(indent)} ${content}`
        items.push(this.parseMapping(indentOf(this.lines[i]!)))
      } else {
        this.pos = i + 1
        items.push(this.scalar(content, i))
      }
    }
    return items
  }

  /** `|` or `|-` (keep or strip the final newline): the more-indented lines after line i, verbatim. */
  private blockScalar(header: string, indent: number, i: number): string {
    if (header !== '|' && header !== '|-') this.fail(i, `block scalar ${header} is outside the subset (| and |- only)`)
    const body: string[] = []
    let contentIndent: number | undefined
    let j = i + 1
    for (; j < this.lines.length; j++) {
      const line = this.lines[j]!
      if (line.trim() === '') {
        body.push('')
        continue
      }
      const lineIndent = indentOf(line)
      if (lineIndent <= indent) break
      contentIndent ??= lineIndent
      if (lineIndent < contentIndent) this.fail(j, 'less indented than the block scalar\'s first line')
      body.push(line.slice(contentIndent))
    }
    while (body.length > 0 && body[body.length - 1] === '') body.pop()
    // Trailing blank lines belong to what follows, not to the scalar.
    let end = j
    while (end > i + 1 && this.lines[end - 1]!.trim() === '') end--
    this.pos = end
    const text = body.join('\n')
    return header === '|' && body.length > 0 ? `${text}\n` : text
  }

  private scalar(raw: string, i: number): YamlValue {
    const t = raw.trim()
    if (t.startsWith('"')) {
      const m = /^("(?:[^"\\]|\\.)*")\s*(#.*)?$/.exec(t)
      if (m === null) this.fail(i, 'unterminated double-quoted scalar')
      return JSON.parse(m[1]!) as string
    }
    if (t.startsWith("'")) {
      const m = /^'((?:[^']|'')*)'\s*(#.*)?$/.exec(t)
      if (m === null) this.fail(i, 'unterminated single-quoted scalar')
      return m[1]!.replace(/''/g, "'")
    }
    const plain = t.replace(/\s+#.*$/, '')
    if (plain === '{}') return {}
    if (plain === '[]') return []
    if (plain.startsWith('[') && plain.endsWith(']')) return plain.slice(1, -1).split(',').map((s) => this.scalar(s, i))
    if (/^[{&*!%@`]/.test(plain)) this.fail(i, `'${plain[0]}' is outside the subset`)
    if (plain === '' || plain === '~' || plain === 'null') return null
    if (plain === 'true') return true
    if (plain === 'false') return false
    // YAML 1.1 (Kubernetes' parser) reads 0755 as octal: the chart writes modes in decimal.
    if (/^-?0\d+$/.test(plain)) this.fail(i, 'a number with a leading zero (octal in YAML 1.1) is outside the subset')
    if (/^-?\d+(\.\d+)?$/.test(plain)) return Number(plain)
    return plain
  }
}
