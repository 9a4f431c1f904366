/**
 * Secrets the built-in processors read at start (a token, a header, a URL holding a
 * credential): from an environment variable or a file, never written in the pipeline.
 */
import { readFileSync } from 'node:fs'
import { isAbsolute, join } from 'node:path'
import { ConfigError } from '../index.ts'

/** Where a secret is read from: an environment variable, or a file (its content, trailing newline removed; relative to the run's work dir). */
export type SecretSource = { env: string } | { file: string }

/** Reads `source`; a missing variable or unreadable file is a ConfigError naming `field`. */
export function readSecret(field: string, source: SecretSource, workDir: string): string {
  if ('env' in source) {
    const value = process.env[source.env]
    if (value === undefined || value === '') throw new ConfigError(field, `environment variable ${source.env} is not set`)
    return value
  }
  try {
    return readFileSync(isAbsolute(source.file) ? source.file : join(workDir, source.file), 'utf8').replace(/\r?\n$/, '')
  } catch (err) {
    throw new ConfigError(field, `cannot read ${source.file}: ${(err as Error).message}`)
  }
}

/** True for `{ env }` or `{ file }` with a non-empty string. */
export function isSecretSource(v: unknown): v is SecretSource {
  if (v === null || typeof v !== 'object') return false
  const o = v as Record<string, unknown>
  return (typeof o.env === 'string' && o.env !== '') || (typeof o.file === 'string' && o.file !== '')
}
