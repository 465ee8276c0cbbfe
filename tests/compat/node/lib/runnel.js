'use strict'
// Start, stop and crash `runnel serve` for the kafkajs tests (twin of python/harness.py).
//
// start(): fresh process on the data dir with --kafka-listener 127.0.0.1:<port> (0 the first
// time, the previous port on a restart), waits for the stdout line
// `runnel ready: kafka=127.0.0.1:PORT` (60 s, else fails with runnel's stderr).
// stop(): SIGTERM, asserts exit code 0. kill9(): SIGKILL. stderr goes to target/compat/logs/.

const { spawn } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')
const readline = require('node:readline')

const READY_TIMEOUT_MS = 60_000
const STOP_TIMEOUT_MS = 60_000
const READY_RE = /^runnel ready: kafka=(127\.0\.0\.1):(\d+) http=(127\.0\.0\.1):(\d+)\s*$/
const REPO = path.resolve(__dirname, '..', '..', '..', '..')

function targetDir() {
  const t = process.env.CARGO_TARGET_DIR
  if (t) return path.isAbsolute(t) ? t : path.join(REPO, t)
  return path.join(REPO, 'target')
}

function runnelBin() {
  return process.env.RUNNEL_BIN || path.join(targetDir(), 'debug', 'runnel')
}

function logDir() {
  const d = process.env.RUNNEL_COMPAT_LOG_DIR || path.join(targetDir(), 'compat', 'logs')
  fs.mkdirSync(d, { recursive: true })
  return d
}

const live = new Set()
process.on('exit', () => {
  for (const child of live) {
    try {
      child.kill('SIGKILL')
    } catch (_) {}
  }
})

class Runnel {
  constructor(name) {
    this.name = name.replace(/[^A-Za-z0-9_.-]+/g, '_')
    this.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), `runnel-${this.name}-`))
    this.logPath = path.join(logDir(), `${this.name}.log`)
    fs.writeFileSync(this.logPath, '')
    this.proc = null
    this.port = null
    this.starts = 0
  }

  get bootstrap() {
    if (this.port == null) throw new Error('runnel is not started')
    return `127.0.0.1:${this.port}`
  }

  running() {
    return this.proc != null && this.proc.exitCode == null && this.proc.signalCode == null
  }

  stderrTail(n = 60) {
    try {
      return fs.readFileSync(this.logPath, 'utf8').split('\n').slice(-n).join('\n')
    } catch (_) {
      return '(no log)'
    }
  }

  async start() {
    if (this.running()) throw new Error('runnel already running')
    const port = this.port == null ? 0 : this.port
    const deadline = Date.now() + READY_TIMEOUT_MS
    for (;;) {
      const res = await this._startOnce(port, deadline)
      if (res.ok) return this
      if (port !== 0 && /in use/i.test(res.msg) && Date.now() < deadline - 1000) {
        await new Promise(r => setTimeout(r, 200))
        continue
      }
      throw new Error(res.msg)
    }
  }

  _startOnce(port, deadline) {
    const bin = runnelBin()
    if (!fs.existsSync(bin)) {
      return Promise.resolve({ ok: false, msg: `runnel binary not found at ${bin} (set RUNNEL_BIN or run tests/compat/run.sh)` })
    }
    const args = ['serve', '--data-dir', this.dataDir, '--kafka-listener', `127.0.0.1:${port}`,
      '--http-listener', '127.0.0.1:0']
    this.starts += 1
    fs.appendFileSync(this.logPath, `\n===== start #${this.starts}: ${bin} ${args.join(' ')}\n`)
    const logFd = fs.openSync(this.logPath, 'a')
    // runnel reads RUNNEL_* settings from the environment: keep the caller's out
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('RUNNEL_')))
    if (!env.RUST_BACKTRACE) env.RUST_BACKTRACE = '1'
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', logFd], env })
    fs.closeSync(logFd)
    this.proc = child
    live.add(child)
    const lines = []
    return new Promise(resolve => {
      let settled = false
      const finish = res => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        resolve(res)
      }
      const rl = readline.createInterface({ input: child.stdout })
      rl.on('line', line => {
        lines.push(line)
        const m = READY_RE.exec(line)
        if (m && !settled) {
          this.port = Number(m[2])
          if (port !== 0 && this.port !== port) {
            child.kill('SIGKILL')
            finish({ ok: false, msg: `runnel bound port ${this.port}, expected ${port}` })
          } else {
            finish({ ok: true })
          }
        }
      })
      child.on('exit', (code, signal) => {
        live.delete(child)
        if (this.proc === child && !settled) this.proc = null
        finish({
          ok: false,
          msg: `runnel exited (code ${code}, signal ${signal}) before it was ready\nstdout: ${JSON.stringify(lines.slice(-10))}\n--- stderr (${this.logPath}) ---\n${this.stderrTail()}`,
        })
      })
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        finish({
          ok: false,
          msg: `runnel did not print 'runnel ready: kafka=127.0.0.1:PORT' within ${READY_TIMEOUT_MS / 1000}s\n--- stderr (${this.logPath}) ---\n${this.stderrTail()}`,
        })
      }, Math.max(0, deadline - Date.now()))
    })
  }

  _waitExit(child, timeoutMs) {
    if (child.exitCode != null || child.signalCode != null) {
      return Promise.resolve({ code: child.exitCode, signal: child.signalCode })
    }
    return new Promise(resolve => {
      const timer = setTimeout(() => resolve(null), timeoutMs)
      child.once('exit', (code, signal) => {
        clearTimeout(timer)
        resolve({ code, signal })
      })
    })
  }

  async stop() {
    const child = this.proc
    if (!child) throw new Error('runnel is not running')
    if (!this.running()) {
      this.proc = null
      throw new Error(`runnel had already exited (code ${child.exitCode}, signal ${child.signalCode}) before SIGTERM\n${this.stderrTail()}`)
    }
    child.kill('SIGTERM')
    const res = await this._waitExit(child, STOP_TIMEOUT_MS)
    this.proc = null
    if (res == null) {
      child.kill('SIGKILL')
      await this._waitExit(child, 30_000)
      throw new Error(`runnel did not exit within ${STOP_TIMEOUT_MS / 1000}s of SIGTERM\n--- stderr (${this.logPath}) ---\n${this.stderrTail()}`)
    }
    fs.appendFileSync(this.logPath, `===== stopped with SIGTERM: exit code ${res.code}, signal ${res.signal}\n`)
    if (res.code !== 0) {
      throw new Error(`runnel exited with code ${res.code} (signal ${res.signal}) after SIGTERM (expected 0 = graceful shutdown)\n--- stderr (${this.logPath}) ---\n${this.stderrTail()}`)
    }
  }

  async kill9() {
    const child = this.proc
    if (!this.running()) throw new Error('runnel is not running')
    child.kill('SIGKILL')
    await this._waitExit(child, 30_000)
    this.proc = null
    fs.appendFileSync(this.logPath, '===== killed with SIGKILL\n')
  }

  async restart() {
    await this.stop()
    await this.start()
  }

  async close() {
    if (this.proc) await this.stop()
  }
}

// Poll an async predicate until it is truthy or timeoutMs passes; then fail with what().
async function waitUntil(cond, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs
  let lastErr = null
  for (;;) {
    try {
      const v = await cond()
      if (v) return v
    } catch (e) {
      lastErr = e
    }
    if (Date.now() > deadline) {
      const w = typeof what === 'function' ? what() : what
      throw new Error(`timed out after ${timeoutMs / 1000}s waiting for: ${w}${lastErr ? ` (last error: ${lastErr.stack || lastErr})` : ''}`)
    }
    await new Promise(r => setTimeout(r, 100))
  }
}

module.exports = { Runnel, waitUntil }
