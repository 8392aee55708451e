#!/usr/bin/env python3
"""Writes a small, synthetic ESP32 application ELF (Xtensa, ELF32 little-endian) for the demo.

It is not runnable firmware: it has the section layout of an ESP-IDF app (an app descriptor in
DROM, code in IROM and IRAM, data in DRAM) so that every espforge step has realistic input without
needing a compiler or Espressif's sample files. Usage: make-demo-elf.py OUT.elf [SEED]
"""
import random
import struct
import sys

out = sys.argv[1]
rng = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 2026)

def app_desc():
    d = bytearray(256)
    struct.pack_into("<II", d, 0, 0xABCD5432, 0)          # magic, secure_version
    d[16:16 + 6] = b"v1.0.0"                                # version
    d[48:48 + 13] = b"espforge-demo"                        # project_name
    d[80:80 + 8] = b"12:00:00"                              # time
    d[96:96 + 11] = b"Nov 25 2026"                          # date
    d[112:112 + 9] = b"v5.2-demo"                           # idf_ver
    d[180] = 16                                             # mmu_page_size (log2)
    return bytes(d)

def blob(n):
    return bytes(rng.getrandbits(8) for _ in range(n))

# (name, address, data, flags) — SHF_ALLOC=2, SHF_EXECINSTR=4, SHF_WRITE=1
sections = [
    (".flash.appdesc", 0x3F400020, app_desc(), 2),
    (".flash.rodata", 0x3F400120, blob(24 * 1024), 2),
    (".dram0.data", 0x3FFB0000, blob(4 * 1024), 3),
    (".iram0.text", 0x40080000, blob(12 * 1024), 6),
    (".flash.text", 0x400D0020, blob(96 * 1024), 6),
]

names = b"\0" + b"".join(s[0].encode() + b"\0" for s in sections) + b".shstrtab\0"
def name_off(n):
    return names.index(n.encode() + b"\0")

body = bytearray()
offsets = []
pos = 52
for _, _, data, _ in sections:
    offsets.append(pos + len(body))
    body += data
strtab_off = 52 + len(body)
body += names
while (52 + len(body)) % 4:
    body += b"\0"
shoff = 52 + len(body)

entry = 0x40080000
header = struct.pack("<16sHHIIIIIHHHHHH",
                     b"\x7fELF\x01\x01\x01" + b"\0" * 9, 2, 94, 1, entry, 0, shoff, 0,
                     52, 0, 0, 40, len(sections) + 2, len(sections) + 1)
shdrs = struct.pack("<IIIIIIIIII", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
for (name, addr, data, flags), off in zip(sections, offsets):
    shdrs += struct.pack("<IIIIIIIIII", name_off(name), 1, flags, addr, off, len(data), 0, 0, 4, 0)
shdrs += struct.pack("<IIIIIIIIII", name_off(".shstrtab"), 3, 0, 0, strtab_off, len(names), 0, 0, 1, 0)

with open(out, "wb") as f:
    f.write(header + body + shdrs)
