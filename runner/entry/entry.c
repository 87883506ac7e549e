/*
 * repro-run-entry: the first process of every build container.
 *
 *     repro-run-entry [--umask OCTAL] [--env K=V]... -- COMMAND [ARG]...
 *     repro-run-entry --hold
 *
 * It starts from an EMPTY environment, puts exactly the given --env entries
 * in it, in order, sets the umask (left as it is without --umask), and
 * execve()s COMMAND with its ARGs. It replaces `env -i K=V... COMMAND`, which
 * needs an `env` in the image: this helper is linked statically and
 * bind-mounted read-only, so it runs on any image (busybox, a lone static
 * binary) and reads no file of it (/etc included).
 *
 * A COMMAND without `/` is looked up as execvp(3) does, but in the PATH given
 * with --env PATH=... (the first one), not in this process's environment;
 * without one, in DEFAULT_PATH. An empty PATH element is the working
 * directory. ENOENT and ENOTDIR go on to the next element, EACCES is
 * remembered and the search goes on; any other error stops it. Unlike
 * execvp, a file the kernel cannot run (ENOEXEC) is not retried with
 * /bin/sh: the image may have none.
 *
 * --hold waits, doing nothing, until it is killed: a container that only
 * keeps its mounts up while files are read out of it (Podman mounts a
 * volume of the `local` driver's only while a container that uses it runs).
 *
 * Exit codes, as env(1) and POSIX shells: 125 bad usage, 126 COMMAND found
 * but could not be run, 127 COMMAND not found. Every message goes to stderr,
 * starts with `repro-run-entry: ` and names the bad value and the fix.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define USAGE "usage: repro-run-entry [--umask OCTAL] [--env K=V]... -- COMMAND [ARG]..."

/* Bad usage: `what`, then `value` in backquotes if there is one. */
static int usage(const char *what, const char *value) {
    if (value)
        fprintf(stderr, "repro-run-entry: %s `%s`\n" USAGE "\n", what, value);
    else
        fprintf(stderr, "repro-run-entry: %s\n" USAGE "\n", what);
    return 125;
}

/* The reason an exec of `cmd` failed with `err`, and the exit code. */
static int cannot_run(const char *cmd, const char *file, int err, const char *path) {
    struct stat st;
    if (err == ENOENT && path)
        fprintf(stderr, "repro-run-entry: cannot run `%s`: not found in PATH=%s "
                "(install it in the image, or give its full path)\n", cmd, path);
    else if (err == ENOENT && access(file, F_OK) == 0)
        fprintf(stderr, "repro-run-entry: cannot run `%s`: %s exists but its interpreter "
                "(#! line or ELF loader) is missing from the image\n", cmd, file);
    else if (err == ENOENT)
        fprintf(stderr, "repro-run-entry: cannot run `%s`: no such file\n", cmd);
    else if (err == EACCES && stat(file, &st) == 0 && S_ISDIR(st.st_mode))
        fprintf(stderr, "repro-run-entry: cannot run `%s`: %s is a directory\n", cmd, file);
    else if (err == EACCES)
        fprintf(stderr, "repro-run-entry: cannot run `%s`: permission denied on %s "
                "(make it executable with chmod +x, on a filesystem not mounted noexec)\n", cmd, file);
    else if (err == ENOEXEC)
        fprintf(stderr, "repro-run-entry: cannot run `%s`: %s is not a program for this machine "
                "(a script needs a #! line)\n", cmd, file);
    else
        fprintf(stderr, "repro-run-entry: cannot run `%s`: %s: %s\n", cmd, file, strerror(err));
    return err == ENOENT ? 127 : 126;
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--hold") == 0) {
        for (;;)
            pause();
    }
    /* The environment, in order; at most one entry per argument, so
     * argc slots (on the stack, as argv itself is) are always enough. */
    char *envp[argc + 1];
    int n = 0, i = 1;
    const char *path = NULL;

    for (; i < argc && strcmp(argv[i], "--") != 0; i += 2) {
        const char *opt = argv[i], *val = argv[i + 1];
        if (opt[0] != '-')
            return usage("no `--` before COMMAND", opt);
        if (strcmp(opt, "--umask") != 0 && strcmp(opt, "--env") != 0)
            return usage("unknown option", opt);
        if (val == NULL)
            return usage("a value must follow", opt);
        if (strcmp(opt, "--env") == 0) {
            if (val[0] == '=' || strchr(val, '=') == NULL)
                return usage("--env takes K=V with a non-empty K, not", val);
            if (path == NULL && strncmp(val, "PATH=", 5) == 0)
                path = val + 5;
            envp[n++] = (char *)val;
        } else {
            unsigned long mask = 0;
            const char *c = val;
            for (; *c >= '0' && *c <= '7' && mask <= 0777; c++)
                mask = mask * 8 + (unsigned long)(*c - '0');
            if (*val == '\0' || *c != '\0' || mask > 0777)
                return usage("--umask takes an octal mode from 0 to 0777 such as 022, not", val);
            umask((mode_t)mask);
        }
    }
    envp[n] = NULL;
    if (i >= argc)
        return usage("no `--` before COMMAND", NULL);
    char **cmd = argv + i + 1;
    if (cmd[0] == NULL || cmd[0][0] == '\0')
        return usage("no COMMAND after `--`", NULL);

    if (strchr(cmd[0], '/') != NULL) {
        execve(cmd[0], cmd, envp);
        return cannot_run(cmd[0], cmd[0], errno, NULL);
    }

    /* execvp(3), in `path`. */
    const char *search = path ? path : DEFAULT_PATH;
    char file[PATH_MAX], denied[PATH_MAX] = "";
    int stop = 0;
    for (const char *dir = search; !stop; dir += strcspn(dir, ":") + 1) {
        size_t len = strcspn(dir, ":");
        stop = dir[len] == '\0';
        if (len == 0) /* an empty element: the working directory */
            snprintf(file, sizeof file, "%s", cmd[0]);
        else if (snprintf(file, sizeof file, "%.*s/%s", (int)len, dir, cmd[0]) >= (int)sizeof file)
            continue;
        execve(file, cmd, envp);
        if (errno == EACCES) {
            if (denied[0] == '\0')
                memcpy(denied, file, sizeof file);
        } else if (errno != ENOENT && errno != ENOTDIR) {
            return cannot_run(cmd[0], file, errno, NULL);
        }
    }
    if (denied[0] != '\0')
        return cannot_run(cmd[0], denied, EACCES, NULL);
    return cannot_run(cmd[0], cmd[0], ENOENT, search);
}
