/**
 * The `weir` command line. bin/weir.js registers tsx and calls `main` with the arguments
 * after the program name; the returned number is the exit code.
 *
 * Exit codes: 0 success, 1 the run failed, 2 usage error or refused input, 3 `weir status`
 * heard no worker, 130 interrupted.
 */
import { actorCommand } from './actor.ts'
import { coordinatorCommand, workerCommand } from './cluster.ts'
import { configCommand } from './config.ts'
import { jobsCommand } from './jobs.ts'
import { monitorCommand } from './monitor.ts'
import { peekCommand } from './peek.ts'
import { runCommand } from './run.ts'
import { savepointCommand } from './savepoint.ts'
import { statusCommand } from './status.ts'
import { tailCommand } from './tail.ts'
import { MAIN_USAGE, helpCommand } from './usage.ts'
import { closestName } from '../runtime/suggest.ts'

const COMMANDS = ['run', 'monitor', 'coordinator', 'worker', 'status', 'actor', 'jobs', 'peek', 'tail', 'savepoint', 'config', 'help']

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  switch (command) {
    case 'run':
      return runCommand(rest)
    case 'monitor':
      return monitorCommand(rest)
    case 'coordinator':
      return coordinatorCommand(rest)
    case 'worker':
      return workerCommand(rest)
    case 'status':
      return statusCommand(rest)
    case 'actor':
      return actorCommand(rest)
    case 'jobs':
      return jobsCommand(rest)
    case 'peek':
      return peekCommand(rest)
    case 'tail':
      return tailCommand(rest)
    case 'savepoint':
      return savepointCommand(rest)
    case 'config':
      return configCommand(rest)
    case 'help':
    case '--help':
    case '-h':
      return helpCommand(command === 'help' ? rest : [])
    case undefined:
      process.stderr.write(`weir: error: no command given\n\n${MAIN_USAGE}`)
      return 2
    default:
      if (command.startsWith('-')) process.stderr.write(`weir: error: unknown option '${command}'\n\n${MAIN_USAGE}`)
      else {
        const suggestion = closestName(command, COMMANDS)
        process.stderr.write(`weir: error: unknown command '${command}'${suggestion === undefined ? '' : `; did you mean weir ${suggestion}?`}\n\n${MAIN_USAGE}`)
      }
      return 2
  }
}
