import { describe, expect, it } from 'vitest'
import { closestName, editDistance } from '../../runtime/suggest.ts'

describe('closestName', () => {
  it('counts a swapped pair of letters as one edit', () => {
    expect(editDistance('cuont', 'count')).toBe(1)
    expect(editDistance('datadir', 'data-dir')).toBe(1)
    expect(editDistance('', 'abc')).toBe(3)
  })
  it('suggests the nearest name within a third of its length, or the one name it is a prefix of', () => {
    expect(closestName('datadir', ['epoch-ms', 'data-dir', 'param'])).toBe('data-dir')
    expect(closestName('cuont', ['rate', 'count', 'unbounded'])).toBe('count')
    expect(closestName('epoch', ['epoch-ms', 'bus'])).toBe('epoch-ms')
    expect(closestName('zzz', ['data-dir', 'bus'])).toBeUndefined()
    // Two letters wrong in a four-letter name is another name, not a typo.
    expect(closestName('rate', ['data'])).toBeUndefined()
  })
})
