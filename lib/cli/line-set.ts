// The list lines a results file already holds, as sorted ranges of line numbers. Results are
// written in list order, so a file of millions of lines makes a handful of ranges (one per run of
// blank lines or stop); a Set held 56 bytes per line and refused more than 2^24 (16.7 million)
// of them, so a rerun over a longer list failed with "Set maximum size exceeded".

export class LineSet {
  /** Starts and ends (inclusive) of disjoint ranges, in order, with a gap between each two. */
  private readonly starts: number[] = []
  private readonly ends: number[] = []
  /** How many lines it holds. */
  size = 0

  /** The index of the first range starting after `n` (ranges before it start at or before `n`). */
  private after(n: number): number {
    let lo = 0
    let hi = this.starts.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.starts[mid] <= n) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  has(n: number): boolean {
    const i = this.after(n) - 1
    return i >= 0 && n <= this.ends[i]
  }

  add(n: number): this {
    const last = this.ends.length - 1
    if (last < 0 || n > this.ends[last]) {
      // In order, as a results file is read: extend the last range or begin one.
      if (last >= 0 && n === this.ends[last] + 1) this.ends[last] = n
      else {
        this.starts.push(n)
        this.ends.push(n)
      }
      this.size++
      return this
    }
    const next = this.after(n)
    const prev = next - 1
    if (prev >= 0 && n <= this.ends[prev]) return this
    const joinsPrev = prev >= 0 && this.ends[prev] === n - 1
    const joinsNext = next < this.starts.length && this.starts[next] === n + 1
    if (joinsPrev && joinsNext) {
      this.ends[prev] = this.ends[next]
      this.starts.splice(next, 1)
      this.ends.splice(next, 1)
    } else if (joinsPrev) this.ends[prev] = n
    else if (joinsNext) this.starts[next] = n
    else {
      this.starts.splice(next, 0, n)
      this.ends.splice(next, 0, n)
    }
    this.size++
    return this
  }
}
