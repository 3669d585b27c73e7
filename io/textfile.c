// Whole-file reads and crash-safe writes (a reader never sees a torn file under the final name),
// and the positioned reads of the binary readers.
#include "textfile.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int file_read_all(const char *path, char **data, size_t *len, Err *e) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return err_set(e, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        fclose(f);
        return err_set(e, "%s: not a regular file", path);
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        fclose(f);
        return err_set(e, "%s: out of memory for %lld bytes", path, (long long)st.st_size);
    }
    size_t got = fread(buf, 1, (size_t)st.st_size, f);
    int bad = ferror(f);
    fclose(f);
    if (bad || got != (size_t)st.st_size) {
        free(buf);
        return err_set(e, "%s: read failed", path);
    }
    buf[got] = 0;
    *data = buf;
    *len = got;
    return 0;
}

static int fsync_path(const char *p, int dir, const char *final, Err *e) {
    int fd = open(p, dir ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
    if (fd < 0) return err_set(e, "%s: cannot open %s to fsync it: %s", final, p, strerror(errno));
    // Some file systems refuse fsync on directories (EINVAL); the rename is then as durable as
    // they allow, which is not a reason to fail the write.
    if (fsync(fd) != 0 && !(dir && (errno == EINVAL || errno == ENOTSUP))) {
        int er = errno;
        close(fd);
        return err_set(e, "%s: fsync of %s failed: %s", final, p, strerror(er));
    }
    close(fd);
    return 0;
}

int file_commit(const char *tmp, const char *path, Err *e) {
    // Without the fsync a crash after the rename could leave a torn file under the final name
    // (HDF5 never calls fsync itself).
    if (fsync_path(tmp, 0, path, e) != 0) {
        unlink(tmp);
        return -1;
    }
    if (rename(tmp, path) != 0) {
        int er = errno;
        unlink(tmp);
        return err_set(e, "%s: cannot rename %s into place: %s", path, tmp, strerror(er));
    }
    char *copy = strdup(path);
    if (!copy) return err_set(e, "%s: out of memory", path);
    int rc = fsync_path(dirname(copy), 1, path, e);
    free(copy);
    return rc;
}

int file_write_atomic(const char *path, const void *data, size_t len, Err *e) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp-%d", path, (int)getpid()) >= (int)sizeof tmp)
        return err_set(e, "%s: path too long", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return err_set(e, "%s: cannot create: %s", tmp, strerror(errno));
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            err_set(e, "%s: write failed: %s", tmp, strerror(errno));
            close(fd);
            unlink(tmp);
            return -1;
        }
        p += w;
        left -= (size_t)w;
    }
    if (close(fd)) {
        err_set(e, "%s: close failed: %s", tmp, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return file_commit(tmp, path, e);
}

int file_open_read(const char *path, int *fd, uint64_t *size, Err *e) {
    struct stat st;
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    if (*fd < 0 || fstat(*fd, &st) != 0) {
        int err = errno;
        if (*fd >= 0) close(*fd);
        *fd = -1;
        return err_set(e, "%s: cannot open: %s", path, strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        close(*fd);
        *fd = -1;
        return err_set(e, "%s: not a regular file", path);
    }
    *size = (uint64_t)st.st_size;
    return 0;
}

int file_pread_exact(int fd, const char *path, const char *what, uint64_t off, void *dst,
                     size_t len, Err *e) {
    uint8_t *p = dst;
    while (len > 0) {
        ssize_t r = pread(fd, p, len, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0)
            return err_set(e, "%s: %s: read failed at offset %llu: %s", path, what,
                           (unsigned long long)off, strerror(errno));
        if (r == 0)
            return err_set(e, "%s: %s: the file ends at offset %llu, before the data its header "
                              "promises (truncated since it was opened)",
                           path, what, (unsigned long long)off);
        p += r;
        off += (uint64_t)r;
        len -= (size_t)r;
    }
    return 0;
}
