// The subset of rocksdb-native (holepunchto) that weir uses; the package ships no types.
declare module 'rocksdb-native' {
  export interface ReadBatch {
    get(key: Buffer | string): Promise<Buffer | null>
    flush(): Promise<void>
    tryFlush(): void
    destroy(): void
  }
  export interface WriteBatch {
    put(key: Buffer | string, value: Buffer | string): Promise<void>
    tryPut(key: Buffer | string, value: Buffer | string): void
    tryDelete(key: Buffer | string): void
    tryDeleteRange(start: Buffer | string, end: Buffer | string): void
    flush(): Promise<void>
    destroy(): void
  }
  export interface Range {
    gt?: Buffer | string
    gte?: Buffer | string
    lt?: Buffer | string
    lte?: Buffer | string
    reverse?: boolean
    limit?: number
    values?: boolean
    capacity?: number
  }
  export interface Entry {
    key: Buffer
    value: Buffer
  }
  export interface Options {
    columnFamilies?: string[]
    readOnly?: boolean
    createIfMissing?: boolean
    maxBackgroundJobs?: number
    writeBufferSize?: number
    [k: string]: unknown
  }
  export default class RocksDB {
    constructor(path: string, opts?: Options)
    readonly opened: boolean
    readonly closed: boolean
    readonly path: string
    ready(): Promise<void>
    close(opts?: { force?: boolean }): Promise<void>
    columnFamily(name: string): RocksDB
    snapshot(): RocksDB
    read(opts?: { capacity?: number; autoDestroy?: boolean }): ReadBatch
    write(opts?: { capacity?: number; autoDestroy?: boolean }): WriteBatch
    iterator(range?: Range, opts?: Range): AsyncIterable<Entry> & { destroy(): void }
    get(key: Buffer | string): Promise<Buffer | null>
    put(key: Buffer | string, value: Buffer | string): Promise<void>
    delete(key: Buffer | string): Promise<void>
    peek(range?: Range): Promise<Entry | null>
    flush(): Promise<void>
    compactRange(start?: Buffer | null, end?: Buffer | null): Promise<void>
    approximateSize(start: Buffer, end: Buffer): Promise<number>
    getProperty(name: string): Promise<string>
  }
}
