/** A wake-up for waiters: `wait(ms)` resolves on the next `notify()` or after `ms`. */
export class Signal {
  private waiters: Array<() => void> = []

  wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined
      const wake = (): void => {
        if (timer !== undefined) clearTimeout(timer)
        resolve()
      }
      this.waiters.push(wake)
      if (ms !== Infinity) {
        timer = setTimeout(() => {
          const i = this.waiters.indexOf(wake)
          if (i >= 0) this.waiters.splice(i, 1)
          resolve()
        }, ms)
      }
    })
  }

  notify(): void {
    const ws = this.waiters
    if (ws.length === 0) return
    this.waiters = []
    for (const w of ws) w()
  }
}

/** Runs async tasks one at a time in submission order. */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve()

  run<T>(task: () => Promise<T>): Promise<T> {
    const next = this.tail.then(task, task)
    this.tail = next.catch(() => undefined)
    return next
  }
}
