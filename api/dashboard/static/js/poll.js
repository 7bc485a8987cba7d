// Live updates by polling with back-off: quick while things change, slower while they do not,
// slowest in a hidden tab. (Server-sent events cannot carry the token header; polling the same
// REST routes can.)
export class Poller {
  /** `task` resolves to true when what it fetched changed. */
  constructor(task, { min = 1000, max = 15000, factor = 1.6, onSchedule = () => {} } = {}) {
    Object.assign(this, { task, min, max, factor, onSchedule });
    this.delay = min;
    this.timer = null;
    this.running = false;
    this.again = false;
    this.stopped = true;
    this.onVisibility = () => { if (!document.hidden) this.kick(); };
  }

  start() {
    this.stopped = false;
    document.addEventListener("visibilitychange", this.onVisibility);
    this.kick();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    document.removeEventListener("visibilitychange", this.onVisibility);
  }

  /** Fetch now and poll quickly again (after an action, or a change of filters). */
  kick() {
    this.delay = this.min;
    this.run();
  }

  async run() {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    clearTimeout(this.timer);
    let changed = false;
    try {
      changed = await this.task();
    } catch (err) {
      console.warn("refresh failed", err);
    }
    this.running = false;
    if (this.again) {
      this.again = false;
      this.kick();
      return;
    }
    this.delay = changed ? this.min : Math.min(this.max, Math.round(this.delay * this.factor));
    if (this.stopped) return;
    const wait = document.hidden ? this.max : this.delay;
    this.onSchedule(wait);
    this.timer = setTimeout(() => this.run(), wait);
  }
}
