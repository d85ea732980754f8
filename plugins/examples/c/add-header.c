/*
 * example-c: a Portcullis plugin (ABI v2) in plain C, no libc.
 *
 * Sets `X-Request-Method` to the request method and, when the token has a
 * `sub` claim, `X-Plugin-Sub` to it (so the plugin's allow-list must
 * contain x-request-method, and x-plugin-sub for tokens with a subject).
 * Config is ignored. Shows what any language has to provide for ABI v2: a
 * memory, four exports (`portcullis_on_request` without parameters),
 * imports from module "portcullis", the buffer protocol (ask, and ask
 * again with a bigger buffer when the value did not fit) and one
 * `header_batch` call for all header changes.
 *
 * Build (plugins/build.sh does this):
 *   clang --target=wasm32 -O2 -nostdlib -ffreestanding -fvisibility=hidden \
 *         -Wl,--no-entry -o example-c.wasm add-header.c
 */

typedef unsigned char u8;
typedef unsigned int u32;

#define EXPORT(name) __attribute__((export_name(name), visibility("default")))
#define IMPORT(name) __attribute__((import_module("portcullis"), import_name(name)))

IMPORT("claim") int claim(const u8 *path, u32 path_len, u8 *buf, u32 buf_cap);
IMPORT("request_field") int request_field(int field, u8 *buf, u32 buf_cap);
IMPORT("header_batch") int header_batch(const u32 *batch, u32 batch_len);
IMPORT("log") void host_log(int level, const u8 *msg, u32 msg_len);

/* ---- the config buffer ---------------------------------------------------
 * A bump allocator over a static arena. In ABI v2 the host calls
 * portcullis_alloc only for the config, right before portcullis_init; the
 * arena is reset when init/on_request starts. on_request also uses it for
 * values too long for the fixed buffers below. */
#define ARENA_SIZE (64 * 1024)
static u8 arena[ARENA_SIZE] __attribute__((aligned(8)));
static u32 arena_used;

static u8 *bump(u32 len) {
    if (len > ARENA_SIZE - arena_used)
        return 0;
    u8 *p = arena + arena_used;
    arena_used += (len + 7u) & ~7u;
    if (arena_used > ARENA_SIZE)
        arena_used = ARENA_SIZE;
    return p;
}

EXPORT("portcullis_alloc") u8 *portcullis_alloc(int len) {
    if (len < 0)
        return 0;
    return bump((u32)len); /* 0 = out of memory: the host fails the call */
}

static void reset_arena(void) { arena_used = 0; }

EXPORT("portcullis_abi_version") int portcullis_abi_version(void) { return 2; }

EXPORT("portcullis_init") int portcullis_init(const u8 *cfg, int cfg_len) {
    (void)cfg;
    (void)cfg_len;
    reset_arena();
    return 0;
}

static void log_error(const char *msg) {
    u32 n = 0;
    while (msg[n])
        n++;
    host_log(0, (const u8 *)msg, n);
}

/* ---- the buffer protocol ---------------------------------------------------
 * A result n >= 0 is the value's length; it was written only if n <= cap.
 * Otherwise ask again with a buffer of n bytes (the value does not change
 * during one on_request). Negative results are error codes (-1 MISSING). */
static u8 method_buf[32];
static u8 sub_buf[128];

static int read_method(const u8 **out) {
    int n = request_field(0, method_buf, sizeof method_buf);
    if (n >= 0 && (u32)n > sizeof method_buf) {
        u8 *big = bump((u32)n);
        if (!big)
            return -100;
        n = request_field(0, big, (u32)n);
        *out = big;
        return n;
    }
    *out = method_buf;
    return n;
}

static int read_sub(const u8 **out) {
    static const u8 path[] = "sub"; /* a claim path: segments joined by NUL */
    int n = claim(path, sizeof path - 1, sub_buf, sizeof sub_buf);
    if (n >= 0 && (u32)n > sizeof sub_buf) {
        u8 *big = bump((u32)n);
        if (!big)
            return -100;
        n = claim(path, sizeof path - 1, big, (u32)n);
        *out = big;
        return n;
    }
    *out = sub_buf;
    return n;
}

/* ---- on_request ------------------------------------------------------------ */
static const u8 METHOD_HEADER[] = "X-Request-Method";
static const u8 SUB_HEADER[] = "X-Plugin-Sub";

enum { OP_SET = 1, OP_APPEND = 2, OP_REMOVE = 3 };

/* header_batch entries: op, name_ptr, name_len, value_ptr, value_len. */
static u32 batch[2][5];

EXPORT("portcullis_on_request") int portcullis_on_request(void) {
    reset_arena();
    const u8 *method = 0, *sub = 0;
    int method_len = read_method(&method);
    if (method_len <= 0) {
        log_error("example-c: the request has no method");
        return 2; /* plugin error */
    }
    u32 entries = 0;
    u32 *e = batch[entries++];
    e[0] = OP_SET;
    e[1] = (u32)METHOD_HEADER;
    e[2] = sizeof METHOD_HEADER - 1;
    e[3] = (u32)method;
    e[4] = (u32)method_len;

    int sub_len = read_sub(&sub);
    if (sub_len >= 0) { /* -1: no `sub` claim (or null): no header */
        e = batch[entries++];
        e[0] = OP_SET;
        e[1] = (u32)SUB_HEADER;
        e[2] = sizeof SUB_HEADER - 1;
        e[3] = (u32)sub;
        e[4] = (u32)sub_len;
    } else if (sub_len != -1) {
        log_error("example-c: reading the sub claim failed");
        return 2;
    }

    int answer = header_batch(&batch[0][0], entries * 20);
    if (answer != 0) {
        /* code | index << 8: which entry was refused, and why. */
        log_error((answer >> 8) == 0
                      ? "example-c: host refused X-Request-Method (not on the allow-list?)"
                      : ((answer & 0xff) == 1 ? "example-c: host refused X-Plugin-Sub (not on the allow-list?)"
                                              : "example-c: host refused the sub claim as a header value"));
        return 2;
    }
    return 0;
}
