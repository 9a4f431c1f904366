/**
 * Every command refuses an option it does not take by naming it and the closest option it
 * does take (or, when none is close, listing its options), exit 2, before doing anything.
 */
import { describe, expect, it } from 'vitest'
import { weir } from '../support/weir-cli.ts'

describe.concurrent('an unknown option names the closest valid one of that command', () => {
  const cases: Array<[string[], string]> = [
    [['run', 'examples/ticker.ts', '--datadir', '/tmp/x'], 'unknown option --datadir; did you mean --data-dir?'],
    [['run', 'examples/ticker.ts', '--parma', 'count=1'], 'unknown option --parma; did you mean --param?'],
    [['coordinator', '--epoch', '500'], 'unknown option --epoch; did you mean --epoch-ms?'],
    [['worker', 'examples/ticker.ts', '--state-dri', '/tmp/x'], 'unknown option --state-dri; did you mean --state-dir?'],
    [['monitor', '--toekn-file', 't'], 'unknown option --toekn-file; did you mean --token-file?'],
    // x is the value of the misspelled option, not the command's problem.
    [['status', '--bsu', 'nats://127.0.0.1:4222'], 'unknown option --bsu; did you mean --bus?'],
    [['actor', 'clear', 'p', 'a/0', '--clustr', 'c'], 'unknown option --clustr; did you mean --cluster?'],
  ]
  for (const [args, text] of cases) {
    it(`weir ${args.join(' ')}`, async () => {
      const r = await weir(args)
      expect(r.code, r.stderr).toBe(2)
      expect(r.stderr).toContain(`weir: error: ${text}`)
      expect(r.stderr).toContain(`weir ${args[0]} --help lists its options`)
      expect(r.stderr).toContain('[WEIR_CONFIG_INVALID]')
      expect(r.stderr).not.toContain('positional argument')
    })
  }

  it('with nothing close, lists the options the command takes', async () => {
    const r = await weir(['status', '--zzzzzz'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('weir: error: unknown option --zzzzzz; weir status takes --bus, --cluster, --wait-ms, --json, ')
    expect(r.stderr).toContain('(weir status --help says what each does)')
  })

  it('an argument a command does not take says it takes only options', async () => {
    const r = await weir(['status', 'nats://127.0.0.1:4222'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("weir: error: status: unexpected argument 'nats://127.0.0.1:4222': weir status takes only options")
  })

  it('an unknown command names the closest command', async () => {
    const r = await weir(['rn', 'examples/ticker.ts'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("weir: error: unknown command 'rn'; did you mean weir run?")
  })
})
