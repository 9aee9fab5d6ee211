// The engine build's progress on a terminal: TensorRT reports nested phases with steps
// (IProgressMonitor); the bar shows the innermost phase that has steps, with its ancestors as a
// path. On a terminal the line is redrawn in place; elsewhere (a log file, CI) one line is
// printed per top-level phase and per cache note, never a line per step.
import type { EngineProgress } from '../types'

interface Phase {
  name: string
  steps: number
  step: number
}

const BAR = 24

export class BuildProgressView {
  private readonly phases: Phase[] = []
  private drawn = false

  /** write: the text to print (with '\r' redraws on a terminal); tty: redraw in place. */
  constructor(private readonly write: (text: string) => void, private readonly tty: boolean) {}

  /** The bar for the current phases, e.g. "Building engine > Tactic search [#####-------] 5/12". */
  line(): string {
    const path = this.phases.map((p) => p.name).join(' > ')
    const inner = [...this.phases].reverse().find((p) => p.steps > 0)
    if (!inner) return path
    const done = Math.min(inner.step, inner.steps)
    const fill = Math.round((done / inner.steps) * BAR)
    return `${path} [${'#'.repeat(fill)}${'-'.repeat(BAR - fill)}] ${done}/${inner.steps}`
  }

  on(event: EngineProgress): void {
    switch (event.type) {
      case 'message':
        this.clear()
        this.write(`${event.message}\n`)
        break
      case 'phase-start': {
        this.phases.push({ name: event.phase, steps: event.steps, step: 0 })
        if (!this.tty && this.phases.length === 1) this.write(`${event.phase}...\n`)
        break
      }
      case 'step': {
        const i = this.innermost(event.phase)
        if (i >= 0) this.phases[i].step = event.step + 1
        break
      }
      case 'phase-end': {
        const i = this.innermost(event.phase)
        if (i >= 0) this.phases.splice(i)
        break
      }
    }
    if (this.tty && event.type !== 'message') this.redraw()
  }

  /** Clears the bar (before other output, and at the end). */
  clear(): void {
    if (this.tty && this.drawn) this.write('\r\x1b[2K')
    this.drawn = false
  }

  /** The index of the innermost open phase of that name, or -1. */
  private innermost(name: string): number {
    for (let i = this.phases.length - 1; i >= 0; i--) if (this.phases[i].name === name) return i
    return -1
  }

  private redraw(): void {
    const text = this.line()
    this.write(`\r\x1b[2K${text}`)
    this.drawn = text !== ''
  }
}
