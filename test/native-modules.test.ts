/**
 * Native modules load on a clean install (npm ci runs no install scripts here, so only
 * prebuilt binaries work): RocksDB through rocksdb-native, msgpackr's native string
 * extraction, @node-rs/crc32 (the Kafka record batches' CRC-32C), and esbuild (behind tsx,
 * which loads pipeline files).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import RocksDB from 'rocksdb-native'
import { isNativeAccelerationEnabled, pack, unpack } from 'msgpackr'
import { execFileSync } from 'node:child_process'
import { crc32c, crc32cIsNative } from '../runtime/pipe/kafka/record-batch.ts'
import { writeFileSync } from 'node:fs'

describe('native modules', () => {
  it('rocksdb-native opens a database, writes a batch and reads it back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weir-native-'))
    const db = new RocksDB(dir)
    await db.ready()
    const w = db.write()
    w.tryPut('k', 'v')
    await w.flush()
    w.destroy()
    expect((await db.get('k'))?.toString()).toBe('v')
    await db.close()
    rmSync(dir, { recursive: true, force: true })
  })

  it('msgpackr uses its native extension', () => {
    expect(unpack(pack({ a: 'x'.repeat(100) }))).toEqual({ a: 'x'.repeat(100) })
    expect(isNativeAccelerationEnabled).toBe(true)
  })

  it('@node-rs/crc32 computes the Kafka record batches\' CRC-32C', () => {
    expect(crc32cIsNative).toBe(true)
    expect(crc32c(Buffer.from('123456789'))).toBe(0xe3069283)
  })

  it('tsx (esbuild underneath) runs a TypeScript file, as weir run does with pipeline files', () => {
    const dir = mkdtempSync(join(tmpdir(), 'weir-native-'))
    const file = join(dir, 'probe.ts')
    writeFileSync(file, 'const n: number = 41\nprocess.stdout.write(String(n + 1))\n')
    expect(execFileSync(process.execPath, ['--import', 'tsx', file], { encoding: 'utf8' })).toBe('42')
    rmSync(dir, { recursive: true, force: true })
  })
})
