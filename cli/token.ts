/**
 * Where a command's bearer token comes from: a file option (trimmed; for secrets kept out
 * of the process list and the environment) or else an environment variable. Refusals name
 * the option or the variable.
 *
 * @example
 * const token = readToken({ file: values['token-file'], fileOption: '--token-file', envName: 'WEIR_MONITOR_TOKEN' }, cwd, env)
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { ConfigError } from '../runtime/errors.ts'

export interface TokenSource {
  /** The file option's value, if given. */
  file: string | undefined
  fileOption: string
  envName: string
}

/** The token, or undefined when neither the file nor the variable gives one. */
export function readToken(source: TokenSource, cwd: string, env: NodeJS.ProcessEnv): string | undefined {
  let token: string | undefined
  if (source.file !== undefined) {
    const path = resolve(cwd, source.file)
    try {
      token = readFileSync(path, 'utf8').trim()
    } catch (err) {
      throw new ConfigError(source.fileOption, `cannot read ${path}: ${(err as Error).message}`)
    }
    if (token === '') throw new ConfigError(source.fileOption, `${source.file} is empty`)
  } else if (env[source.envName] !== undefined && env[source.envName] !== '') {
    token = env[source.envName]
  }
  if (token !== undefined && /\s/.test(token)) throw new ConfigError(source.file === undefined ? source.envName : source.fileOption, 'the token must not contain whitespace')
  return token
}
