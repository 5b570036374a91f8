/**
 * File I/O that other programs and crashes rely on: atomic replacement (model
 * files, checkpoints, gradients), clean-up after a writer killed mid-write,
 * and read errors that name the file.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

/** The temporary file beside `target` that writeFileAtomic writes first: hidden, tagged with the writer's pid. */
function temporaryName(target: string): string {
  return path.join(path.dirname(path.resolve(target)), `.${path.basename(target)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

/**
 * Replaces `target` with `data` so that a reader (or a crash) sees either the
 * old file or the new one, never a half-written one: write a temporary file in
 * the same directory (rename is only atomic within a file system), fsync it,
 * rename it over the target, then fsync the directory so the rename itself is
 * durable.
 */
export function writeFileAtomic(target: string, data: Uint8Array): void {
  const dir = path.dirname(path.resolve(target));
  const temp = temporaryName(target);
  let fd: number | undefined;
  try {
    fd = fs.openSync(temp, 'wx');
    let written = 0;
    while (written < data.length) written += fs.writeSync(fd, data, written, data.length - written);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(temp, target);
  } catch (e) {
    if (fd !== undefined) {
      try {
        fs.closeSync(fd);
      } catch {
        // Already failing; the original error is the one worth reporting.
      }
    }
    try {
      fs.unlinkSync(temp);
    } catch {
      // The temp file may never have been created.
    }
    throw e;
  }
  try {
    const dirFd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(dirFd);
    } finally {
      fs.closeSync(dirFd);
    }
  } catch {
    // Some platforms and file systems cannot fsync a directory; the data is in place regardless.
  }
}

/**
 * Deletes the temporary files of `target` that writers killed mid-write left
 * behind, but only those of processes that no longer exist: a live writer's
 * file is left alone.
 */
export function removeStaleTemporaries(target: string): void {
  const dir = path.dirname(path.resolve(target));
  let entries: string[];
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return; // no directory yet: nothing to clean
  }
  const name = path.basename(target).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const pattern = new RegExp(`^\\.${name}\\.(\\d+)\\.[0-9a-f]+\\.tmp$`);
  for (const entry of entries) {
    const match = pattern.exec(entry);
    if (!match || processExists(Number(match[1]))) continue;
    try {
      fs.unlinkSync(path.join(dir, entry));
    } catch {
      // Gone already, or not ours to delete: either way not worth failing for.
    }
  }
}

function processExists(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The bytes of `file`, with read errors that name it (`cannot read <what>
 * from <file>: …`): Node's own messages for some failures (a file over 2 GiB,
 * a string too long) do not. The error code is kept for callers that test for
 * ENOENT.
 */
export function readFileNamed(file: string, what: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? 'no such file' : err.message;
    const wrapped = new Error(`cannot read ${what} from ${file}: ${why}`, { cause: e }) as NodeJS.ErrnoException;
    if (err.code !== undefined) wrapped.code = err.code;
    throw wrapped;
  }
}

/**
 * Throws, naming `file` and `what` it is for, when `file` could not be
 * written: its directory is missing or not writable, or a directory stands
 * in its place. Callers check before long work (a training run) whose result
 * would otherwise be lost when the write fails at the end.
 */
export function checkWritable(file: string, what: string): void {
  if (file === '') throw new Error(`cannot write ${what}: the file name is empty`);
  const dir = path.dirname(path.resolve(file));
  let isDirectory = false;
  try {
    isDirectory = fs.statSync(file).isDirectory();
  } catch {
    // Absent: the usual case for an output.
  }
  if (isDirectory) throw new Error(`cannot write ${what} to ${file}: it is a directory`);
  try {
    if (!fs.statSync(dir).isDirectory()) throw new Error(`${dir} is not a directory`);
    fs.accessSync(dir, fs.constants.W_OK);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const why = err.code === 'ENOENT' ? `no directory ${dir}` : err.code === 'EACCES' ? `${dir} is not writable` : err.message;
    throw new Error(`cannot write ${what} to ${file}: ${why}`, { cause: e });
  }
}
