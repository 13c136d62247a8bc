// Package wire decodes msgpack that came from the network under a bound.
//
// msgpack v5 allocates whatever length a container header claims before it
// reads a single element: a 5-byte array header claiming 2³² elements asks
// for tens of gigabytes. Check walks the encoding first, without allocating,
// and refuses any header that claims more elements (or bytes) than the input
// still holds, nesting deeper than MaxDepth, an invalid type byte, a
// truncated value, or bytes left over after the one value. Once Check has
// accepted b, decoding it allocates memory proportional to len(b).
package wire
