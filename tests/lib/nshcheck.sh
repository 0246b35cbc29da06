# nsh_check PCAP: the NSH headers of a frames capture (Ethernet + NSH records, as an
# egress's `frames:` writes them), as a next hop would receive them: one line
#   frames F packets P header_mean M header_max X over_252 O wireshark_warnings W
# where M is every record's header bytes (state-only frames' too) per packet, and W the
# records tshark flags (malformed, or expert info of warning or error severity: TCP's own
# chat and notes are not about the frame), or "-" without tshark. What is checked is the
# frame, NSH and its TLVs; the packet inside is the traffic's own (IP dissection is off:
# the generator's payloads, cut-off HTTP bodies, repeated DNS queries, bytes a heuristic
# takes for Thrift, are what tshark flags there). Source it.
nsh_check() {
	local pcap=$1 w=-
	if command -v tshark >/dev/null; then
		w=$(tshark --disable-protocol ip --disable-protocol ipv6 -r "$pcap" -Y '_ws.expert.severity >= 0x600000 || _ws.malformed' 2>/dev/null | wc -l)
	fi
	python3 - "$pcap" "$w" <<'EOP'
import struct, sys
d = open(sys.argv[1], "rb").read()
le = d[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1")  # micro- or nanoseconds
off, frames, packets, total, top, over = 24, 0, 0, 0, 0, 0
while off + 16 <= len(d):
    _, _, caplen, _ = struct.unpack(("<" if le else ">") + "IIII", d[off:off + 16])
    rec = d[off + 16:off + 16 + caplen]
    off += 16 + caplen
    nsh = rec[14:]
    if len(nsh) < 8:
        continue
    hlen = ((nsh[1] & 0x3F) | (nsh[2] >> 4) << 6) * 4
    frames += 1
    packets += len(nsh) > hlen or nsh[3] != 0
    total += hlen
    top = max(top, hlen)
    over += hlen > 252
print("frames %d packets %d header_mean %.1f header_max %d over_252 %d wireshark_warnings %s"
      % (frames, packets, total / max(packets, 1), top, over, sys.argv[2]))
EOP
}
