// The pixel buffers a batch thread keeps for later images (batch-worker.ts): buffers of images
// the main thread is done with, sent back with each read, into which the thread copies the next
// images' pixels instead of allocating (each new buffer also cost the main thread its share of
// the collections that free them).

/** A few buffers at most, the largest dropped first (a list's images are mostly of a size or a few). */
export class SpareBuffers {
  private readonly spares: ArrayBuffer[] = []

  constructor(private readonly limit = 8) {}

  keep(buffer: ArrayBuffer): void {
    this.spares.push(buffer)
    if (this.spares.length > this.limit) {
      this.spares.splice(this.spares.indexOf(this.spares.reduce((a, b) => (b.byteLength > a.byteLength ? b : a))), 1)
    }
  }

  /**
   * The smallest spare that holds `bytes` and is at most twice that, taken; undefined if none is.
   * A larger one is left to be dropped as others come (keep()): used for a small image, a burst
   * of large images' buffers would stay in use, and held, for the rest of the run.
   */
  take(bytes: number): ArrayBuffer | undefined {
    let best = -1
    for (let i = 0; i < this.spares.length; i++) {
      const size = this.spares[i].byteLength
      if (size >= bytes && size <= 2 * bytes && (best < 0 || size < this.spares[best].byteLength)) best = i
    }
    return best < 0 ? undefined : this.spares.splice(best, 1)[0]
  }
}
