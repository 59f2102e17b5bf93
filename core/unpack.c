/* core/unpack.c — safe extraction of an uploaded archive (see unpack.h). libarchive only parses: every
 * file is written here with open(O_CREAT | O_EXCL | O_NOFOLLOW) below dest, directories with mkdir, so
 * nothing the archive says can create a link, set a mode or owner, or reach outside dest. Caps are
 * checked after every chunk read, so a bomb stops at the cap, not at its end. Caller's thread. */
#define _GNU_SOURCE
#include "core/unpack.h"
#include "common/err.h"
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_PATH_LEN 1024   /* an entry's name, bytes */
#define MAX_DEPTH 12        /* components of an entry's name (the trainer reads 8 levels inside a class) */
#define CHUNK (64 * 1024)

static struct archive *reader(void)
{
    struct archive *a = archive_read_new();
    if (!a) return NULL;
    /* the formats and filters the API documents, nothing more (less parser surface) */
    archive_read_support_format_tar(a);
    archive_read_support_format_zip(a);
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_bzip2(a);
    archive_read_support_filter_xz(a);
    return a;
}

int unpack_is_archive(const char *path)
{
    struct archive *a = reader();
    if (!a) return 0;
    struct archive_entry *e;
    int ok = archive_read_open_filename(a, path, CHUNK) == ARCHIVE_OK && archive_read_next_header(a, &e) == ARCHIVE_OK;
    archive_read_free(a);
    return ok;
}

static int is_image_name(const char *base)
{
    const char *dot = strrchr(base, '.');
    return dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

/* Image types torchvision reads that the trainer refuses: refused here too, so that an upload never
 * trains on fewer images than its folder holds. */
static int is_other_image_name(const char *base)
{
    static const char *const exts[] = {".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp"};
    const char *dot = strrchr(base, '.');
    for (size_t i = 0; dot && i < sizeof exts / sizeof exts[0]; i++)
        if (!strcasecmp(dot, exts[i])) return 1;
    return 0;
}

/* An entry's name as a clean relative path: "." components and a trailing "/" dropped; refused when
 * absolute, with "..", a backslash or a control character, too long or too deep. OUT clean
 * (MAX_PATH_LEN), *hidden = a component starts with '.' or is __MACOSX (dropped, not refused). */
static int clean_path(const char *name, char *clean, int *hidden, char *err, size_t errlen)
{
    *hidden = 0;
    if (!name || !*name) return err_set(err, errlen, -EINVAL, "an entry has no name");
    if (strlen(name) >= MAX_PATH_LEN) return err_set(err, errlen, -EINVAL, "an entry's name is longer than %d bytes", MAX_PATH_LEN - 1);
    if (name[0] == '/') return err_set(err, errlen, -EINVAL, "entry \"%s\": absolute paths are refused", name);
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        if (*p < 0x20 || *p == 0x7f) return err_set(err, errlen, -EINVAL, "an entry's name holds a control character");
        if (*p == '\\') return err_set(err, errlen, -EINVAL, "entry \"%s\": backslashes are refused", name);
    }
    size_t n = 0;
    int depth = 0;
    const char *p = name;
    while (*p) {
        const char *s = strchr(p, '/');
        size_t len = s ? (size_t)(s - p) : strlen(p);
        if (len == 2 && !strncmp(p, "..", 2)) return err_set(err, errlen, -EINVAL, "entry \"%s\": \"..\" is refused", name);
        if (len > 0 && !(len == 1 && p[0] == '.')) {
            if (p[0] == '.' || (len == 8 && !strncmp(p, "__MACOSX", 8))) *hidden = 1;
            if (++depth > MAX_DEPTH) return err_set(err, errlen, -EINVAL, "entry \"%s\": nested deeper than %d", name, MAX_DEPTH);
            if (n) clean[n++] = '/';
            memcpy(clean + n, p, len);
            n += len;
        }
        p += len;
        if (*p == '/') p++;
    }
    clean[n] = 0;
    if (!n) return err_set(err, errlen, -EINVAL, "entry \"%s\": names nothing", name);
    return 0;
}

/* mkdir -p of rel below dest (each component checked to be a real directory: never follows a link,
 * though none can exist: this file writes none). */
static int make_dirs(const char *dest, const char *rel, int last_too, char *err, size_t errlen)
{
    char p[MAX_PATH_LEN + 1200];
    snprintf(p, sizeof p, "%s/%s", dest, rel);
    size_t n = strlen(p);
    for (size_t i = strlen(dest) + 1; i <= n; i++) {
        if (p[i] != '/' && !(i == n && last_too)) continue;
        char keep = p[i];
        p[i] = 0;
        struct stat st;
        if (mkdir(p, 0700) != 0 && errno != EEXIST) return err_set(err, errlen, -errno, "cannot create a folder: %s", strerror(errno));
        if (lstat(p, &st) != 0 || !S_ISDIR(st.st_mode))
            return err_set(err, errlen, -EINVAL, "entry \"%s\": a file and a folder of the same name", rel);
        p[i] = keep;
    }
    return 0;
}

typedef struct caps {
    const unpack_limits *lim;
    long long archive_bytes;
    unpack_stats *st;
    long long read;             /* decompressed bytes so far */
} caps;

static int over_cap(caps *c, char *err, size_t errlen)
{
    const unpack_limits *l = c->lim;
    if (l->max_bytes > 0 && c->read > l->max_bytes)
        return err_set(err, errlen, -EFBIG, "the archive expands past %lld bytes", l->max_bytes);
    if (l->max_ratio > 0 && c->read > UNPACK_RATIO_FLOOR && (double)c->read > l->max_ratio * (double)c->archive_bytes)
        return err_set(err, errlen, -EFBIG, "the archive expands more than %g times its %lld bytes (a compression bomb?)",
                       l->max_ratio, c->archive_bytes);
    return 0;
}

/* Read the current entry's data into fd (-1: read and drop), counting it against the caps. */
static int copy_data(struct archive *a, int fd, caps *c, const char *rel, char *err, size_t errlen)
{
    char buf[CHUNK];
    for (;;) {
        la_ssize_t k = archive_read_data(a, buf, sizeof buf);
        if (k == 0) return 0;
        if (k < 0) return err_set(err, errlen, -EINVAL, "entry \"%s\": %s", rel, archive_error_string(a));
        c->read += k;
        int rc = over_cap(c, err, errlen);
        if (rc) return rc;
        for (la_ssize_t done = 0; fd >= 0 && done < k;) {
            ssize_t w = write(fd, buf + done, (size_t)(k - done));
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) return err_set(err, errlen, -errno, "cannot write \"%s\": %s", rel, strerror(errno));
            done += w;
        }
        if (fd >= 0) c->st->bytes += k;
    }
}

static int one_entry(struct archive *a, struct archive_entry *e, const char *dest, caps *c, char *err, size_t errlen)
{
    char rel[MAX_PATH_LEN];
    int hidden, rc;
    const char *name = archive_entry_pathname(e);
    if ((rc = clean_path(name, rel, &hidden, err, errlen)) < 0) return rc;
    if (archive_entry_hardlink(e)) return err_set(err, errlen, -EINVAL, "entry \"%s\": hard links are refused", rel);
    mode_t type = archive_entry_filetype(e);
    if (type == AE_IFLNK) return err_set(err, errlen, -EINVAL, "entry \"%s\": symbolic links are refused", rel);
    if (type != AE_IFREG && type != AE_IFDIR)
        return err_set(err, errlen, -EINVAL, "entry \"%s\": device files, fifos and sockets are refused", rel);
    const char *base = strrchr(rel, '/');
    base = base ? base + 1 : rel;
    if (type == AE_IFREG && !hidden && is_other_image_name(base))
        return err_set(err, errlen, -EINVAL, "entry \"%s\": unsupported image type (PNG and JPEG only)", rel);
    if (hidden || (type == AE_IFREG && !is_image_name(base))) {
        if (type == AE_IFREG) c->st->skipped++;
        return copy_data(a, -1, c, rel, err, errlen);
    }
    if (type == AE_IFDIR) return make_dirs(dest, rel, 1, err, errlen);
    if ((rc = make_dirs(dest, rel, 0, err, errlen)) < 0) return rc;
    char path[MAX_PATH_LEN + 1200];
    snprintf(path, sizeof path, "%s/%s", dest, rel);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST) return err_set(err, errlen, -EINVAL, "entry \"%s\" appears twice", rel);
    if (fd < 0) return err_set(err, errlen, -errno, "cannot create \"%s\": %s", rel, strerror(errno));
    c->st->images++;
    rc = copy_data(a, fd, c, rel, err, errlen);
    if (close(fd) != 0 && rc == 0) rc = err_set(err, errlen, -errno, "cannot write \"%s\": %s", rel, strerror(errno));
    return rc;
}

int unpack_extract(const char *archive, const char *dest, const unpack_limits *lim, unpack_stats *st, char *err,
                   size_t errlen)
{
    memset(st, 0, sizeof *st);
    struct stat ast;
    if (stat(archive, &ast) != 0) return err_set(err, errlen, -errno, "cannot read the upload: %s", strerror(errno));
    caps c = {.lim = lim, .archive_bytes = (long long)ast.st_size, .st = st};
    struct archive *a = reader();
    if (!a) return err_set(err, errlen, -ENOMEM, "out of memory");
    int rc = 0;
    if (archive_read_open_filename(a, archive, CHUNK) != ARCHIVE_OK) {
        rc = err_set(err, errlen, -EINVAL, "not a readable archive: %s", archive_error_string(a));
        goto done;
    }
    for (;;) {
        struct archive_entry *e;
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_EOF) break;
        if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
            rc = err_set(err, errlen, -EINVAL, "a damaged archive after %lld entries: %s", st->entries, archive_error_string(a));
            break;
        }
        if (lim->max_entries > 0 && ++st->entries > lim->max_entries) {
            rc = err_set(err, errlen, -EFBIG, "the archive has more than %lld entries", lim->max_entries);
            break;
        }
        if ((rc = one_entry(a, e, dest, &c, err, errlen)) < 0) break;
    }
done:
    archive_read_free(a);
    return rc;
}
