/**
 * Polls `check` every 50 ms until it stops throwing (an expect that does not hold yet);
 * rethrows its last error after `withinMs`.
 *
 * @example
 * await eventually(async () => expect((await status()).running).toBe(3))
 */
export async function eventually<T>(check: () => Promise<T>, withinMs = 3000): Promise<T> {
  const deadline = Date.now() + withinMs
  for (;;) {
    try {
      return await check()
    } catch (err) {
      if (Date.now() > deadline) throw err
      await new Promise((r) => setTimeout(r, 50))
    }
  }
}
