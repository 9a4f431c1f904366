/**
 * `weir actor clear`: bad arguments are refused naming what is wrong (exit 2) before
 * anything connects; an unreachable bus is exit 1 naming it; no coordinator answering is
 * exit 1 saying so. (A clear that a coordinator answers: test/coordinator/failure-isolation.)
 */
import { randomUUID } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { parseActorArgs } from '../../cli/actor.ts'
import { requireService } from '../support/services.ts'
import { weir } from '../support/weir-cli.ts'

const nats = await requireService('nats')

describe('weir actor clear', () => {
  it('refuses bad arguments naming them, exit 2, before connecting', async () => {
    const dead = 'nats://127.0.0.1:1'
    const cases: Array<[string[], RegExp]> = [
      [['actor'], /weir: error: actor: expected a subcommand: clear[\s\S]*weir help actor/],
      [['actor', 'drop', 'p', 'count/1', '--bus', dead], /unknown subcommand 'drop'/],
      [['actor', 'clear', 'p', '--bus', dead], /actor clear: expected <pipeline> <actor>/],
      [['actor', 'clear', 'p', 'count', '--bus', dead], /weir: error: <actor>: 'count' is not an actor id: expected <stage>\/<partition>/],
      [['actor', 'clear', 'p', 'count/1'], /weir: error: --bus: weir actor talks to the coordinator over the control bus/],
      [['actor', 'clear', 'p', 'count/1', '--bus', dead, '--cluster', 'a.b'], /weir: error: --cluster: 'a\.b' must be/],
      [['actor', 'clear', 'p', 'count/1', '--bus', dead, '--wait-ms', '0'], /weir: error: --wait-ms: '0' must be/],
    ]
    const results = await Promise.all(cases.map(([args]) => weir(args)))
    results.forEach((r, i) => {
      expect(r.code, cases[i]![0].join(' ')).toBe(2)
      expect(r.stderr, cases[i]![0].join(' ')).toMatch(cases[i]![1])
      expect(r.stdout).toBe('')
    })
    expect(parseActorArgs(['clear', 'wc', 'count/3', '--bus', dead], {})).toMatchObject({ bus: dead, cluster: 'default', pipeline: 'wc', actor: 'count/3', waitMs: 10_000 })
  })

  it('fails naming the server when NATS does not answer, exit 1', async () => {
    const r = await weir(['actor', 'clear', 'p', 'count/1', '--bus', 'nats://127.0.0.1:1'])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/WEIR_BUS_UNAVAILABLE[\s\S]*nats:\/\/127\.0\.0\.1:1/)
  })

  it.skipIf(!nats.available)('says so when no coordinator answers, exit 1', async () => {
    const r = await weir(['actor', 'clear', 'p', 'count/1', '--bus', nats.url, '--cluster', `none${randomUUID().slice(0, 8)}`, '--wait-ms', '500'])
    expect(r.code).toBe(1)
    expect(r.stderr).toMatch(/no coordinator answered within 500 ms.*\[WEIR_NO_COORDINATOR\]/)
  })

  it('has its usage under help actor and actor --help', async () => {
    const [a, b] = await Promise.all([weir(['help', 'actor']), weir(['actor', '--help'])])
    expect(a.code).toBe(0)
    expect(a.stdout).toContain('Usage: weir actor clear <pipeline> <actor>')
    expect(b.stdout).toBe(a.stdout)
  })
})
