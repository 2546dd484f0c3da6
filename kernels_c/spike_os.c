/* spike_os.c: picolibc's operating-system layer over Spike's HTIF, in place of semihosting (which Spike lacks), for
 * the RV32 image `make spike` builds (DPL_SPIKE; empty otherwise, so the host and QEMU builds link their own).
 *
 * Spike's front end performs Linux system calls for the target: a block {number, arguments} whose address is written
 * to `tohost` (spike_htif.c), answered through `fromhost`, the result in the block's first word. The program's command
 * line comes from Spike's getmainvars (the words after the ELF on Spike's command line), which picolibc's semihost
 * start-up (crt0-semihost) asks for; files open relative to Spike's working directory; flags are translated from
 * picolibc's values to Linux's.
 */
#ifdef DPL_SPIKE
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spike_htif.h"

extern volatile uint64_t tohost, fromhost;

enum { SYS_openat = 56, SYS_close = 57, SYS_lseek = 62, SYS_read = 63, SYS_write = 64, SYS_getmainvars = 2011 };
#define LINUX_AT_FDCWD (-100)

static volatile uint64_t sys_block[8] __attribute__((aligned(64)));

/* one system call through HTIF: its result, or -errno */
static int64_t htif_syscall5(uint64_t n, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4)
{
    sys_block[0] = n, sys_block[1] = a0, sys_block[2] = a1, sys_block[3] = a2, sys_block[4] = a3, sys_block[5] = a4;
    __sync_synchronize();
    tohost = (uint64_t)(uintptr_t)sys_block;
    while (fromhost == 0)
        ;
    fromhost = 0;
    __sync_synchronize();
    return (int64_t)sys_block[0];
}

static int64_t htif_syscall(uint64_t n, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3)
{
    return htif_syscall5(n, a0, a1, a2, a3, 0);
}

static uint64_t addr(const void *p)
{
    return (uint64_t)(uintptr_t)p;
}

/* Spike's argv: words {argc, argv[0..argc) as addresses, 0, 0} then the strings; the arguments after the ELF's
 * path (argv[0]; crt0-semihost names the program itself), joined with spaces */
int sys_semihost_get_cmdline(char *buf, int size)
{
    static uint64_t vars[512];
    if (htif_syscall(SYS_getmainvars, addr(vars), sizeof vars, 0, 0) != 0)
        return -1;
    int n = 0;
    for (uint64_t i = 1; i < vars[0]; i++) {
        const char *a = (const char *)(uintptr_t)vars[1 + i];
        const int len = (int)strlen(a);
        if (n + len + 1 >= size)
            return -1;
        if (n)
            buf[n++] = ' ';
        memcpy(buf + n, a, (size_t)len);
        n += len;
    }
    buf[n] = '\0';
    return 0;
}

static int linux_flags(int flags)
{
    int f = flags & O_ACCMODE; /* 0, 1, 2 alike */
    if (flags & O_CREAT)
        f |= 0100;
    if (flags & O_EXCL)
        f |= 0200;
    if (flags & O_TRUNC)
        f |= 01000;
    if (flags & O_APPEND)
        f |= 02000;
    return f;
}

int open(const char *path, int flags, ...)
{
    va_list ap;
    va_start(ap, flags);
    const int mode = (flags & O_CREAT) ? va_arg(ap, int) : 0;
    va_end(ap);
    const int64_t r = htif_syscall5(SYS_openat, (uint64_t)(int64_t)LINUX_AT_FDCWD, addr(path), strlen(path) + 1,
                                    (uint64_t)linux_flags(flags), (uint64_t)mode);
    return r < 0 ? -1 : (int)r;
}

ssize_t read(int fd, void *buf, size_t n)
{
    const int64_t r = htif_syscall(SYS_read, (uint64_t)fd, addr(buf), n, 0);
    return r < 0 ? -1 : (ssize_t)r;
}

ssize_t write(int fd, const void *buf, size_t n)
{
    const int64_t r = htif_syscall(SYS_write, (uint64_t)fd, addr(buf), n, 0);
    return r < 0 ? -1 : (ssize_t)r;
}

int close(int fd)
{
    return htif_syscall(SYS_close, (uint64_t)fd, 0, 0, 0) < 0 ? -1 : 0;
}

off_t lseek(int fd, off_t off, int whence)
{
    const int64_t r = htif_syscall(SYS_lseek, (uint64_t)fd, (uint64_t)(int64_t)off, (uint64_t)whence, 0);
    return r < 0 ? -1 : (off_t)r;
}

int fstat(int fd, struct stat *st)
{
    (void)fd;
    memset(st, 0, sizeof *st);
    return 0;
}

int isatty(int fd)
{
    return fd <= 2;
}

void _exit(int code)
{
    htif_exit(code);
}

/* stdout and stderr: a line at a time through write(2) */
#define LINE 256
struct line_out {
    FILE file;
    int fd, n;
    char buf[LINE];
};

static int line_flush(FILE *f)
{
    struct line_out *o = (struct line_out *)f;
    if (o->n)
        write(o->fd, o->buf, (size_t)o->n);
    o->n = 0;
    return 0;
}

static int line_put(char c, FILE *f)
{
    struct line_out *o = (struct line_out *)f;
    o->buf[o->n++] = c;
    if (c == '\n' || o->n == LINE)
        line_flush(f);
    return (unsigned char)c;
}

static int no_get(FILE *f)
{
    (void)f;
    return EOF;
}

static struct line_out out1 = {FDEV_SETUP_STREAM(line_put, no_get, line_flush, _FDEV_SETUP_WRITE), 1, 0, {0}};
static struct line_out out2 = {FDEV_SETUP_STREAM(line_put, no_get, line_flush, _FDEV_SETUP_WRITE), 2, 0, {0}};
static FILE in0 = FDEV_SETUP_STREAM(NULL, no_get, NULL, _FDEV_SETUP_READ);
FILE *const stdin = &in0;
FILE *const stdout = &out1.file;
FILE *const stderr = &out2.file;
#endif
