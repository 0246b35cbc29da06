/* A small read-only YAML DOM built from libyaml's event parser: scalars, mappings and
 * sequences, each carrying the 1-based line and column where it starts. Anchors,
 * aliases, tags, non-scalar mapping keys, duplicate keys and more than one document are
 * rejected. Every error is one line, "FILE:LINE:COL: message".
 *
 * A document owns all of its nodes: node pointers stay valid until rdm_ydoc_free. */
#ifndef RDM_YAML_H
#define RDM_YAML_H

#include <stddef.h>
#include <stdint.h>

struct rdm_ydoc;
struct rdm_ynode;

enum rdm_ykind { RDM_YSCALAR = 1, RDM_YMAP, RDM_YSEQ };

/* Nesting deeper than this is rejected. */
#define RDM_YMAX_DEPTH 64
/* Values, keys and collections in one document, at most: what a document may cost in
 * memory is bounded (about 160 bytes each: some 160 MB however the file is written),
 * whatever its size. rdmesh's largest files (a rack of 4096 nodes, a directory of
 * users) hold far fewer. */
#define RDM_YMAX_NODES 1000000

/* Parses the file at path. NULL with errno set and a message in err on failure:
 * "FILE: strerror" when it cannot be read, "FILE:LINE:COL: message" (errno EINVAL) when
 * it is not acceptable YAML. The caller owns the result. */
struct rdm_ydoc *rdm_ydoc_load(const char *path, char *err, size_t errlen);

/* As rdm_ydoc_load, for the NUL-terminated text; name stands in for the file name in
 * messages. */
struct rdm_ydoc *rdm_ydoc_parse_string(const char *name, const char *text, char *err,
				       size_t errlen);

/* Frees d and all of its nodes; accepts NULL. */
void rdm_ydoc_free(struct rdm_ydoc *d);

/* The top-level node, or NULL for an empty document. */
const struct rdm_ynode *rdm_ydoc_root(const struct rdm_ydoc *d);

/* The name given at load (the path), owned by d. */
const char *rdm_ydoc_name(const struct rdm_ydoc *d);

enum rdm_ykind rdm_ynode_kind(const struct rdm_ynode *n);
int rdm_ynode_line(const struct rdm_ynode *n);
int rdm_ynode_col(const struct rdm_ynode *n);

/* "scalar", "mapping" or "sequence". */
const char *rdm_ykind_name(enum rdm_ykind kind);

/* A scalar's text (NUL-terminated, owned by the document), or NULL if n is not a scalar.
 * Quoted scalars come back without quotes and with escapes applied. */
const char *rdm_ynode_scalar(const struct rdm_ynode *n);

/* 1 if n is a plain (unquoted) scalar that YAML reads as null: empty, "~" or
 * "null"/"Null"/"NULL"; else 0. */
int rdm_ynode_is_null(const struct rdm_ynode *n);

/* Mappings keep their entries in file order; keys are scalars. The size is 0 and the
 * accessors return NULL for a node of another kind or an index out of range. */
size_t rdm_ymap_size(const struct rdm_ynode *map);
const struct rdm_ynode *rdm_ymap_key(const struct rdm_ynode *map, size_t i);
const struct rdm_ynode *rdm_ymap_value(const struct rdm_ynode *map, size_t i);

/* The value under key, or NULL if map is not a mapping or has no such key. */
const struct rdm_ynode *rdm_ymap_get(const struct rdm_ynode *map, const char *key);

size_t rdm_yseq_size(const struct rdm_ynode *seq);
const struct rdm_ynode *rdm_yseq_item(const struct rdm_ynode *seq, size_t i);

/* Formats "FILE:LINE:COL: message" into err (just "FILE: message" when n is NULL);
 * control characters in the result become '?', so it stays one line. Returns -EINVAL. */
int rdm_yerr(const struct rdm_ydoc *d, const struct rdm_ynode *n, char *err, size_t len,
	     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* 0 if n is of the given kind, else -EINVAL with "WHAT: expected a mapping, got a
 * sequence" (or similar) at n; what names n for the reader and may be NULL. */
int rdm_yexpect(const struct rdm_ydoc *d, const struct rdm_ynode *n, const char *what,
		enum rdm_ykind kind, char *err, size_t len);

/* Typed getters. Each returns 0 and sets *out, or -EINVAL with an error at n's position
 * and *out untouched. */

/* A non-null scalar without NUL bytes; *out points into the document. */
int rdm_yget_str(const struct rdm_ydoc *d, const struct rdm_ynode *n, const char **out, char *err,
		 size_t len);
/* A decimal integer, digits only (no sign, no spaces), within min..max. */
int rdm_yget_u64(const struct rdm_ydoc *d, const struct rdm_ynode *n, uint64_t min, uint64_t max,
		 uint64_t *out, char *err, size_t len);
/* A finite decimal number within min..max (min is at least 0: no sign is accepted). */
int rdm_yget_double(const struct rdm_ydoc *d, const struct rdm_ynode *n, double min, double max,
		    double *out, char *err, size_t len);
/* true/false/yes/no, any case; *out is 1 or 0. */
int rdm_yget_bool(const struct rdm_ydoc *d, const struct rdm_ynode *n, int *out, char *err,
		  size_t len);

/* Optional mapping entries: when map (NULL counts as an empty mapping) has no key, *out =
 * def and 0 is returned; otherwise as the getter above applied to the value, with "KEY: "
 * in front of an error message ("x.yaml:6:14: workers: 65 is out of range (1..64)"). */
int rdm_ymap_str(const struct rdm_ydoc *d, const struct rdm_ynode *map, const char *key,
		 const char *def, const char **out, char *err, size_t len);
int rdm_ymap_u64(const struct rdm_ydoc *d, const struct rdm_ynode *map, const char *key,
		 uint64_t min, uint64_t max, uint64_t def, uint64_t *out, char *err, size_t len);
int rdm_ymap_double(const struct rdm_ydoc *d, const struct rdm_ynode *map, const char *key,
		    double min, double max, double def, double *out, char *err, size_t len);
int rdm_ymap_bool(const struct rdm_ydoc *d, const struct rdm_ynode *map, const char *key, int def,
		  int *out, char *err, size_t len);

/* 0 if every key of map is in allowed (a NULL-terminated list), else -EINVAL with
 * "unknown key 'replcas' (did you mean 'replicas'?)" at the first unknown key; the hint
 * names the closest allowed key when it is within edit distance 2. */
int rdm_ymap_check_keys(const struct rdm_ydoc *d, const struct rdm_ynode *map,
			const char *const allowed[], char *err, size_t len);

/* A copy of s into *out: 0, or -ENOMEM with "FILE: out of memory" (d's file) in err,
 * the way the loaders built on this DOM report it. */
int rdm_ystrdup(const struct rdm_ydoc *d, const char *s, char **out, char *err, size_t len);

/* Edit distance (insertions, deletions, substitutions and swaps of neighbours, each 1)
 * between a and b; SIZE_MAX if out of memory. */
size_t rdm_yedit_distance(const char *a, const char *b);

/* The candidate closest to word by rdm_yedit_distance, provided the distance is at most
 * maxdist and less than word's length; the first of equals wins. NULL if none. */
const char *rdm_yclosest(const char *word, const char *const cands[], size_t n, size_t maxdist);

#endif
