/*
 * example-c: a Portcullis plugin (ABI v1) in plain C, no libc.
 *
 * Copies the request method into `X-Request-Method` (so the plugin's
 * allow-list must contain x-request-method). Config is ignored; claims are
 * not needed. Shows what any language has to provide: a memory, four
 * exports, imports from module "portcullis" and a tiny JSON scan.
 *
 * Build (plugins/build.sh does this):
 *   clang --target=wasm32 -O2 -nostdlib -ffreestanding -fvisibility=hidden \
 *         -Wl,--no-entry -o example-c.wasm add-header.c
 */

typedef unsigned char u8;
typedef unsigned int u32;

#define EXPORT(name) __attribute__((export_name(name), visibility("default")))
#define IMPORT(name) __attribute__((import_module("portcullis"), import_name(name)))

IMPORT("set_header") int set_header(const u8 *name, u32 name_len, const u8 *value, u32 value_len);
IMPORT("log") void host_log(int level, const u8 *msg, u32 msg_len);

/* ---- input buffers ------------------------------------------------------
 * A bump allocator over a static arena. Every portcullis_alloc returns a
 * fresh, non-overlapping region; the arena is reset when init/on_request
 * starts (the host only allocates right before a call, for that call's
 * inputs, and they are not used after the call returns). */
#define ARENA_SIZE (64 * 1024)
static u8 arena[ARENA_SIZE] __attribute__((aligned(8)));
static u32 arena_used;

EXPORT("portcullis_alloc") u8 *portcullis_alloc(int len) {
    if (len < 0 || (u32)len > ARENA_SIZE - arena_used)
        return 0; /* out of memory: the host fails the call */
    u8 *p = arena + arena_used;
    arena_used += ((u32)len + 7u) & ~7u;
    if (arena_used > ARENA_SIZE)
        arena_used = ARENA_SIZE;
    return p;
}

static void reset_arena(void) { arena_used = 0; }

EXPORT("portcullis_abi_version") int portcullis_abi_version(void) { return 1; }

EXPORT("portcullis_init") int portcullis_init(const u8 *cfg, int cfg_len) {
    (void)cfg;
    (void)cfg_len;
    reset_arena();
    return 0;
}

/* ---- a minimal top-level JSON scan --------------------------------------
 * Finds the string value of top-level key `key` in the request object.
 * Tracks nesting and strings so a key of the same name inside `headers`
 * (or inside a string) is never mistaken for it. Returns the length, or -1
 * if absent, not a string, or it contains escapes (a method never does). */
static int key_is(const u8 *s, u32 len, const char *key) {
    u32 i = 0;
    for (; i < len; i++)
        if (key[i] == 0 || (u8)key[i] != s[i])
            return 0;
    return key[i] == 0;
}

static int top_level_string(const u8 *json, u32 len, const char *key, const u8 **out) {
    int depth = 0;
    u32 i = 0;
    while (i < len) {
        u8 c = json[i];
        if (c == '"') {
            u32 start = ++i;
            while (i < len && json[i] != '"')
                i += (json[i] == '\\') ? 2 : 1;
            if (i >= len)
                return -1;
            u32 end = i++; /* json[start..end) is the raw string body */
            if (depth != 1)
                continue;
            /* A key is followed by ':'; a value is not. */
            u32 j = i;
            while (j < len && (json[j] == ' ' || json[j] == '\t' || json[j] == '\n' || json[j] == '\r'))
                j++;
            if (j >= len || json[j] != ':')
                continue;
            if (!key_is(json + start, end - start, key)) {
                i = j + 1;
                continue;
            }
            j++;
            while (j < len && (json[j] == ' ' || json[j] == '\t' || json[j] == '\n' || json[j] == '\r'))
                j++;
            if (j >= len || json[j] != '"')
                return -1;
            u32 vstart = ++j;
            while (j < len && json[j] != '"') {
                if (json[j] == '\\')
                    return -1;
                j++;
            }
            if (j >= len)
                return -1;
            *out = json + vstart;
            return (int)(j - vstart);
        }
        if (c == '{' || c == '[')
            depth++;
        else if (c == '}' || c == ']')
            depth--;
        i++;
    }
    return -1;
}

static const u8 HEADER[] = "X-Request-Method";

EXPORT("portcullis_on_request")
int portcullis_on_request(const u8 *claims, int claims_len, const u8 *req, int req_len) {
    (void)claims;
    (void)claims_len;
    reset_arena(); /* inputs stay readable: nothing allocates during the call */
    const u8 *method = 0;
    int n = req_len > 0 ? top_level_string(req, (u32)req_len, "method", &method) : -1;
    if (n <= 0) {
        static const u8 msg[] = "example-c: request JSON has no string \"method\"";
        host_log(0, msg, sizeof msg - 1);
        return 2; /* plugin error */
    }
    if (set_header(HEADER, sizeof HEADER - 1, method, (u32)n) != 0) {
        static const u8 msg[] = "example-c: host refused X-Request-Method (not on the allow-list?)";
        host_log(0, msg, sizeof msg - 1);
        return 2;
    }
    return 0;
}
