// Whole-file reads, crash-safe whole-file writes (temporary name, fsync, rename), and the raw
// positioned reads of the binary readers (safetensors, GGUF).
#ifndef LETHE_TEXTFILE_H
#define LETHE_TEXTFILE_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"

// Reads a whole file; the buffer is NUL-terminated (len excludes the NUL). Caller frees.
int file_read_all(const char *path, char **data, size_t *len, Err *e);
// Writes data to "<path>.tmp-<pid>", fsyncs, renames over path, fsyncs the directory.
int file_write_atomic(const char *path, const void *data, size_t len, Err *e);
// Commits a closed temporary file: fsync(tmp), rename(tmp, path), fsync(directory of path).
// On failure the temporary is removed and `path` is untouched.
int file_commit(const char *tmp, const char *path, Err *e);

// Opens a regular file for reading: *fd (O_CLOEXEC) and its *size. Errors name the path.
int file_open_read(const char *path, int *fd, uint64_t *size, Err *e);
// Exactly len bytes at off (retrying short reads and EINTR). The caller has checked that the
// range lies inside the file as it was opened: running out of bytes means it shrank since.
// `what` names the part being read in the message.
int file_pread_exact(int fd, const char *path, const char *what, uint64_t off, void *dst,
                     size_t len, Err *e);

#endif
