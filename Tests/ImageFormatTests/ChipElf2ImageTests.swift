import ESPCore
import Foundation
import ImageFormat
import Testing
import TestSupport

/// A small ELF32 (no program headers) with the given PROGBITS sections, written by hand.
func syntheticELF(machine: UInt16, entry: UInt32, sections: [(name: String, address: UInt32, data: [UInt8])]) -> [UInt8] {
    var out = [UInt8](repeating: 0, count: 52)
    var offsets: [Int] = []
    for s in sections {
        while out.count % 4 != 0 { out.append(0) }
        offsets.append(out.count)
        out += s.data
    }
    var names: [UInt8] = [0]
    var nameOffsets: [Int] = []
    for s in sections + [(name: ".shstrtab", address: 0, data: [])] {
        nameOffsets.append(names.count)
        names += Array(s.name.utf8) + [0]
    }
    let strOffset = out.count
    out += names
    while out.count % 4 != 0 { out.append(0) }
    let shoff = out.count
    out += [UInt8](repeating: 0, count: 40)  // null section
    func sectionHeader(_ name: Int, _ type: UInt32, _ flags: UInt32, _ addr: UInt32, _ offset: Int, _ size: Int) {
        for v in [UInt32(name), type, flags, addr, UInt32(offset), UInt32(size), 0, 0, 4, 0] { out.appendLE(v) }
    }
    for (i, s) in sections.enumerated() { sectionHeader(nameOffsets[i], 1, 0x7, s.address, offsets[i], s.data.count) }
    sectionHeader(nameOffsets[sections.count], 3, 0, 0, strOffset, names.count)
    let ident: [UInt8] = [0x7F, 0x45, 0x4C, 0x46, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    out.replaceSubrange(0..<16, with: ident)
    var h: [UInt8] = []
    h.appendLE(UInt16(2)); h.appendLE(machine); h.appendLE(UInt32(1)); h.appendLE(entry)
    h.appendLE(UInt32(0)); h.appendLE(UInt32(shoff)); h.appendLE(UInt32(0))
    h.appendLE(UInt16(52)); h.appendLE(UInt16(32)); h.appendLE(UInt16(0)); h.appendLE(UInt16(40))
    h.appendLE(UInt16(sections.count + 2)); h.appendLE(UInt16(sections.count + 1))
    out.replaceSubrange(16..<52, with: h)
    return out
}

/// An IDF-shaped ELF for `chip`: app descriptor and rodata in the DROM window, code in the IROM
/// window, IRAM code and DRAM data, at addresses taken from the chip table. The descriptor sits
/// 0x20 into the window (0x8020 on chips with configurable MMU pages, as ESP-IDF links it for
/// 32 KB pages), with rodata right after it.
func chipELF(_ chip: ChipSpec, appDescriptor: Bool = true) -> [UInt8] {
    var seed: UInt32 = 0x1234_5678 ^ UInt32(chip.imageChipID)
    func bytes(_ n: Int) -> [UInt8] {
        (0..<n).map { _ in seed = seed &* 1_103_515_245 &+ 12345; return UInt8(truncatingIfNeeded: seed >> 16) }
    }
    let irom = chip.flashMappedRanges[0].start, drom = chip.flashMappedRanges[1].start
    let desc = drom + (chip.mmuPageSizes.isEmpty ? 0x20 : 0x8020)
    let text = (irom == drom ? irom + 0x2_0000 : irom) + 0x20
    let iram = chip.memoryMap.first { $0.name == "IRAM" }!.start + 0x100
    let dram = chip.memoryMap.first { $0.name == "DRAM" }!.start + 0x2000
    var appDesc = [UInt8](repeating: 0, count: 256)
    appDesc.storeLE(AppDescriptor.magicWord, at: 0)
    appDesc.replaceSubrange(48..<56, with: Array("espforge".utf8))
    let xtensa = ["esp32", "esp32s2", "esp32s3"].contains(chip.name)
    return syntheticELF(machine: xtensa ? 0x5E : 0xF3, entry: iram, sections: [
        (appDescriptor ? ".flash.appdesc" : ".flash.rodata_start", desc, appDesc),
        (".flash.rodata", desc + 0x100, bytes(0x123)),
        (".flash.text", text, bytes(0x1804)),
        (".iram0.text", iram, bytes(0x2010)),
        (".dram0.data", dram, bytes(0x344)),
    ])
}

@Suite("elf2image per chip against esptool")
struct ChipElf2ImageTests {
    @Test("elf2image is byte-identical to esptool elf2image for every chip in the table",
          .enabled(if: Oracle.availableOrCI, Comment(rawValue: Oracle.skipReason)),
          arguments: ChipSpec.imageChips.map(\.name))
    func byteIdentical(_ name: String) throws {
        let chip = try #require(ChipSpec.named(name, in: ChipSpec.imageChips))
        let dir = try TestEnvironment.temporaryDirectory("chip-elf2image")
        let elfPath = try temporaryFile(dir, "\(name).elf", chipELF(chip))
        // Without an app descriptor (whose ELF SHA-256 slot at 0xb0 a RAM-only header would cover).
        let plainPath = try temporaryFile(dir, "\(name)-plain.elf", chipELF(chip, appDescriptor: false))
        let variants: [[String]] = [[elfPath], ["--flash-mode", "dio", "--flash-size", "4MB", "--flash-freq", chip.flashFrequencies[0].name, elfPath],
                                    ["--ram-only-header", plainPath], ["--ram-only-header", "--pad-to-size", "4KB", plainPath]]
            + (chip.mmuPageSizes.isEmpty ? [] : [["--flash-mmu-page-size", "\(chip.mmuPageSizes[0] / 1024)KB", elfPath]])
        for (i, args) in variants.enumerated() {
            let theirs = dir.appendingPathComponent("\(name)-\(i)-esptool.bin").path
            let r = try Oracle.run("esptool", ["--chip", name, "elf2image"] + args + ["-o", theirs])
            try #require(r.status == 0, "\(r.err)\(r.out)")
            let mine = dir.appendingPathComponent("\(name)-\(i)-espforge.bin").path
            let m = try Espforge.run(["image", "elf2image", "--chip", name] + args + ["-o", mine])
            try #require(m.status == 0, "\(m.err)")
            let a = try readFile(mine), b = try readFile(theirs)
            if args.contains("--ram-only-header") && args.contains("--pad-to-size") {
                // esptool 5.6.0 bug: without an appended digest it writes the 0xFF padding from
                // file offset 2 (where it last wrote the segment count), over the header and the
                // first segments, instead of at the end. espforge pads at the end; everything else
                // is the same.
                try #require(a.count >= b.count && b.count > 4096)
                let sameHead = a[0..<2] == b[0..<2], sameTail = a[4096..<b.count] == b[4096...]
                #expect(sameHead && sameTail && b[2..<4096].allSatisfy { $0 == 0xFF } && a[b.count...].allSatisfy { $0 == 0xFF }
                        && a.count % 4096 == 0 && (try? ESPImage(a)) != nil, "\(name) \(args)")
                continue
            }
            let same = a == b
            #expect(same, "\(name) \(args): \(a.count) vs \(b.count) bytes, first difference at \(Array(zip(a, b)).firstIndex { $0.0 != $0.1 } ?? min(a.count, b.count))")
        }
    }
}
