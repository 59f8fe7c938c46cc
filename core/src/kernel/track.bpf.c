// The BPF half of livemirror's kernel write tracker (see tracker.rs).
//
// Attached to the tracepoint block:block_rq_complete, which the block layer
// fires in blk_update_request() for every completed (or partially completed)
// request, *before* the request's bios are ended and the submitter is told.
// For each completion on the tracked disk that is not a read, it sets the
// bits of the chunks it touched in DIRTY, a bitmap (one u64 word per 64
// chunks) that userspace mmaps and drains with atomic swaps. A read that
// covers the tracked range's first sector counts in STATS[STAT_MARKER]: the
// tracker's barrier issues such a read and checks that it was seen.
//
// Built by core/build.rs with `clang -target bpf`. It uses no GPL-only
// helper (tracepoint fields are read with plain loads, not
// bpf_probe_read_kernel), so it carries the project's license.

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

// Set by the loader before loading. `const volatile` puts them in .rodata,
// which is frozen, so the verifier treats them as constants.
struct config {
	__u32 dev;        // the disk's dev_t, kernel encoding (major << 20 | minor)
	__u32 gran_shift; // log2(granularity / 512)
	__u64 start;      // first tracked sector of the disk (a partition's start)
	__u64 sectors;    // tracked length in 512-byte sectors
	__u64 max_words;  // longest span set word by word; longer ones set STAT_OVERFLOW
	// Byte offsets of the record's fields, from the tracepoint's format file
	// (userspace checks them: aligned to their size, inside RECORD_WORDS * 8).
	__u32 off_dev;
	__u32 off_sector;
	__u32 off_nr_sector;
	__u32 off_rwbs;
};

const volatile struct config CONFIG = {};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1); // the loader sets one word per 64 chunks
} DIRTY SEC(".maps");

enum {
	// Reads seen covering the tracked range's first sector (barrier markers).
	STAT_MARKER,
	// Non-zero: a completion too large to set word by word, or one whose
	// range the record does not say (a passthrough command that moved
	// data, a zone reset): every chunk must be treated as dirty.
	STAT_OVERFLOW,
	STAT_LEN,
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, STAT_LEN);
} STATS SEC(".maps");

// The record prefix copied to the stack: the fields of block_rq_complete lie
// in its first 48 bytes on 6.x kernels, and the record is 48 bytes long
// before its variable part (the kernel refuses to attach a program that
// reads further).
#define RECORD_WORDS 6

struct span {
	__u32 first; // first word
	__u32 last;  // last word
	__u64 first_mask;
	__u64 last_mask;
};

static void stat_add(__u32 which, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&STATS, &which);
	if (v)
		__sync_fetch_and_add(v, n);
}

static long set_word(__u64 i, void *ctx)
{
	struct span *s = ctx;
	__u32 w = s->first + (__u32)i;
	__u64 mask = ~0ULL;
	if (w == s->first)
		mask &= s->first_mask;
	if (w == s->last)
		mask &= s->last_mask;
	__u64 *word = bpf_map_lookup_elem(&DIRTY, &w);
	if (!word)
		return 1;
	// A fully ordered atomic read-modify-write: the bit is in the map before
	// this completion goes on to end the request's bios.
	__sync_fetch_and_or(word, mask);
	return 0;
}

SEC("tracepoint/block/block_rq_complete")
int on_rq_complete(void *ctx)
{
	// A tracepoint program may only load from its record at constant
	// offsets, so copy a prefix of it and index the copy with the offsets
	// the format file gave.
	union {
		__u64 q[RECORD_WORDS];
		__u32 d[RECORD_WORDS * 2];
		__u8 b[RECORD_WORDS * 8];
	} rec;
	const __u64 *raw = ctx;
	// Word 0 is the common header (type, flags, pid), which the kernel
	// does not let a tracepoint program read; no field we need is there.
	rec.q[0] = 0;
#pragma unroll
	for (int i = 1; i < RECORD_WORDS; i++)
		rec.q[i] = raw[i];

	// Userspace checked the offsets; the bounds checks are for the verifier.
	__u32 i_dev = CONFIG.off_dev >> 2, i_sector = CONFIG.off_sector >> 3;
	__u32 i_nr = CONFIG.off_nr_sector >> 2, at = CONFIG.off_rwbs;
	if (i_dev >= RECORD_WORDS * 2 || i_sector >= RECORD_WORDS || i_nr >= RECORD_WORDS * 2 ||
	    at >= RECORD_WORDS * 8 - 1)
		return 0;
	if (rec.d[i_dev] != CONFIG.dev)
		return 0;
	__u64 sector = rec.q[i_sector];
	__u32 nr = rec.d[i_nr];
	// rwbs: an optional 'F' (preflush), then the operation: R read, W write,
	// D discard, F flush, N anything else (write-zeroes, zone operations,
	// passthrough commands).
	__u8 op = rec.b[at];
	if (op == 'F' && rec.b[at + 1] != 0)
		op = rec.b[at + 1];

	__u64 lo = CONFIG.start;
	__u64 hi = CONFIG.start + CONFIG.sectors;
	if (sector == ~0ULL) {
		// No position: a flush, or a passthrough command (SG_IO, NVMe
		// passthrough). One that moved no data (TEST UNIT READY, a flush)
		// wrote nothing; one that did may have written anywhere.
		if (nr != 0)
			stat_add(STAT_OVERFLOW, 1);
		return 0;
	}
	if (op == 'R') {
		if (sector <= lo && lo < sector + nr)
			stat_add(STAT_MARKER, 1);
		return 0;
	}
	if (nr == 0) {
		// A preflush without data wrote nothing; an operation without a
		// length (a zone reset) may have changed a whole zone.
		if (op == 'N')
			stat_add(STAT_OVERFLOW, 1);
		return 0;
	}
	// Every other operation is taken as a write: marking too much costs a
	// copy, marking too little loses a write.
	__u64 end = sector + nr;
	if (end <= lo || sector >= hi)
		return 0;
	if (sector < lo)
		sector = lo;
	if (end > hi)
		end = hi;
	__u64 c0 = (sector - lo) >> CONFIG.gran_shift;
	__u64 c1 = (end - 1 - lo) >> CONFIG.gran_shift;
	struct span s = {
		.first = c0 >> 6,
		.last = c1 >> 6,
		.first_mask = ~0ULL << (c0 & 63),
		.last_mask = ~0ULL >> (63 - (c1 & 63)),
	};
	__u64 words = (__u64)s.last - s.first + 1;
	if (words > CONFIG.max_words) {
		stat_add(STAT_OVERFLOW, 1);
		return 0;
	}
	bpf_loop(words, set_word, &s, 0);
	return 0;
}

char LICENSE[] SEC("license") = "MIT OR Apache-2.0";
