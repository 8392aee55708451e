import Crypto
import ESPCore

/// Image-layout facts per chip that the chip table does not carry (esptool's image classes).
public struct ImageLayoutRules: Sendable {
    /// Pad a flash-mapped segment so it ends at least 0x24 bytes into its last MMU page (works
    /// around an old ESP32 second-stage bootloader that failed to map that page).
    public var padLastMMUPage: Bool
    /// `--secure-pad` (Secure Boot V1) is accepted.
    public var supportsSecurePadV1: Bool

    public static func forChip(_ chip: ChipSpec) -> ImageLayoutRules {
        table[chip.name] ?? ImageLayoutRules(padLastMMUPage: false, supportsSecurePadV1: false)
    }

    static let table: [String: ImageLayoutRules] = [
        "esp32": ImageLayoutRules(padLastMMUPage: true, supportsSecurePadV1: true),
        "esp32s3": ImageLayoutRules(padLastMMUPage: false, supportsSecurePadV1: false),
        "esp32c3": ImageLayoutRules(padLastMMUPage: false, supportsSecurePadV1: false),
    ]
}

/// Options of `elf2image`, named after esptool's.
public struct ImageBuildOptions: Sendable {
    public var flashMode: String = "qio"
    public var flashFrequency: String? = nil
    public var flashSize: String = "1MB"
    public var minRevision: UInt8 = 0
    public var minRevisionFull: UInt16 = 0
    public var maxRevisionFull: UInt16 = 65535
    public var securePadV1: Bool = false
    public var securePadV2: Bool = false
    /// Where to write the ELF file's SHA-256 (IDF apps: 0xb0). nil or 0: automatic, as esptool:
    /// 0xb0 when the ELF has a flash-resident `.flash.appdesc` section, else nowhere.
    public var elfSHA256Offset: Int? = nil
    public var appendDigest: Bool = true
    /// Build from LOAD program headers instead of sections.
    public var useSegments: Bool = false
    /// Pad the finished image with 0xFF to a multiple of this many bytes.
    public var padToSize: Int? = nil
    /// `--flash-mmu-page-size`: the MMU page size flash-mapped segments are aligned to. nil: as
    /// esptool, the chip's default, or on chips with configurable pages (``ChipSpec/mmuPageSizes``)
    /// the size the app descriptor states or, failing that, the largest size its address fits.
    public var mmuPageSize: Int? = nil
    /// `--ram-only-header`: the header counts (and the checksum covers) only the RAM segments,
    /// written first; flash-mapped segments follow, each behind a zero pad segment, invisible to
    /// the ROM. No SHA-256 is appended.
    public var ramOnlyHeader: Bool = false

    public init() {}
}

/// Turns an ELF file into an ESP image, byte-identical to esptool 5.6.0's `elf2image`.
public enum ImageBuilder {
    struct Piece {
        var name: String
        var address: UInt32
        var data: [UInt8]
        /// The ELF section's (or program header's) alignment; 0 counts as 1.
        var align: UInt32 = 4
    }

    public static func elf2image(elf bytes: [UInt8], chip: ChipSpec, options: ImageBuildOptions) throws(ImageError) -> [UInt8] {
        let elf = try ELFFile(bytes)
        return try build(elf: elf, elfBytes: bytes, chip: chip, options: options)
    }

    public static func build(elf: ELFFile, elfBytes: [UInt8], chip: ChipSpec, options o: ImageBuildOptions) throws(ImageError) -> [UInt8] {
        let rules = ImageLayoutRules.forChip(chip)
        guard let mode = chip.flashMode(named: o.flashMode) else {
            throw .unknownParameter(kind: "flash mode", value: o.flashMode, allowed: chip.flashModes.map(\.name))
        }
        guard let size = chip.flashSize(named: o.flashSize) else {
            throw .unknownParameter(kind: "flash size", value: o.flashSize, allowed: chip.flashSizes.map(\.name))
        }
        var freqCode: UInt8 = 0
        if let f = o.flashFrequency {
            guard let fc = chip.flashFrequency(named: f) else {
                throw .unknownParameter(kind: "flash frequency", value: f, allowed: chip.flashFrequencies.map(\.name))
            }
            freqCode = fc.code
        }
        if o.securePadV1 && !rules.supportsSecurePadV1 {
            throw .layout("--secure-pad (Secure Boot V1) is not available for \(chip.displayName)", hint: "use --secure-pad-v2")
        }
        if (o.securePadV1 || o.securePadV2) && !(o.appendDigest && !o.ramOnlyHeader) {
            throw .layout("secure padding needs the appended SHA-256 digest", hint: "drop --dont-append-digest or --ram-only-header")
        }

        // 1. Input pieces, in ELF order, each padded to a multiple of 4 bytes.
        var pieces: [Piece]
        if o.useSegments {
            pieces = elf.loadableSegments.map { Piece(name: "PHDR", address: $0.physicalAddress, data: $0.data, align: $0.alignment) }
        } else {
            pieces = elf.loadableSections.map { Piece(name: $0.name, address: $0.address, data: $0.data, align: $0.alignment) }
        }
        let appendDigest = o.appendDigest && !o.ramOnlyHeader
        for i in pieces.indices where pieces[i].data.count % 4 != 0 {
            pieces[i].data += [UInt8](repeating: 0, count: 4 - pieces[i].data.count % 4)
        }

        let page = try mmuPageSize(chip: chip, pieces: pieces, requested: o.mmuPageSize)

        // ELF SHA-256 placement.
        var shaOffset = 0
        if let off = o.elfSHA256Offset, off != 0 {
            shaOffset = off
        } else if let desc = pieces.first(where: { $0.name.contains(".flash.appdesc") }), chip.isFlashMapped(desc.address) {
            shaOffset = 0xB0
        }
        let elfSHA = shaOffset != 0 ? Array(SHA256.hash(data: elfBytes)) : []

        // 2. Merge neighbours (in ELF order) that touch and share memory types.
        func types(_ a: UInt32) -> [String] { chip.memoryMap.filter { $0.contains(a) }.map(\.name) }
        if o.ramOnlyHeader {
            // Sorted by address first (stable), as esptool does for RAM-only headers.
            pieces = pieces.enumerated().sorted { a, b in
                a.element.address != b.element.address ? a.element.address < b.element.address : a.offset < b.offset
            }.map(\.element)
        }
        if pieces.count > 1 {
            var merged: [Piece] = []
            var i = pieces.count - 1
            while i > 0 {
                let next = pieces[i]
                if o.ramOnlyHeader {
                    // Keep the next piece's alignment when that closes the gap exactly.
                    let end = UInt64(pieces[i - 1].address) + UInt64(pieces[i - 1].data.count)
                    let align = UInt64(max(next.align, 1))
                    let padded = end % align == 0 ? end : end + align - end % align
                    if padded != end && padded == UInt64(next.address) {
                        pieces[i - 1].data += [UInt8](repeating: 0, count: Int(padded - end))
                    }
                }
                if types(pieces[i - 1].address) == types(next.address),
                   UInt64(next.address) == UInt64(pieces[i - 1].address) + UInt64(pieces[i - 1].data.count) {
                    pieces[i - 1].data += next.data
                } else {
                    merged.append(next)
                }
                i -= 1
            }
            merged.append(pieces[0])
            pieces = merged.reversed()
        }
        guard pieces.count <= ESPImage.maxSegments else {
            throw .layout("the ELF has \(pieces.count) segments after merging; an image holds at most \(ESPImage.maxSegments)",
                          hint: "this usually indicates a linker script problem")
        }

        // 3. Flash-mapped vs RAM, each sorted by address (stable).
        let sorted = pieces.enumerated().sorted { a, b in
            a.element.address != b.element.address ? a.element.address < b.element.address : a.offset < b.offset
        }.map(\.element)
        var flash = sorted.filter { chip.isFlashMapped($0.address) }
        var ram = sorted.filter { !chip.isFlashMapped($0.address) }
        if let i = flash.firstIndex(where: { $0.name == ".flash.appdesc" }) { flash.insert(flash.remove(at: i), at: 0) }
        if let i = ram.firstIndex(where: { $0.name == ".dram0.bootdesc" }) { ram.insert(ram.remove(at: i), at: 0) }
        if var last = flash.first?.address {
            for s in flash.dropFirst() {
                if Int(s.address) / page == Int(last) / page {
                    throw .layout("segment loaded at \(NumberParsing.hex(s.address)) lands in the same \(page / 1024) KB flash mapping as the segment loaded at \(NumberParsing.hex(last))",
                                  hint: "change the linker script to merge these sections")
                }
                last = s.address
            }
        }

        // 4. Write.
        var out: [UInt8] = []
        out.reserveCapacity(elfBytes.count / 2)
        out += [ESPImage.magic, 0, mode.code, size.code | freqCode]
        out.appendLE(elf.entry)
        out += [0xEE, 0, 0, 0]
        out.appendLE(chip.imageChipID)
        out.append(o.minRevision)
        out.appendLE(o.minRevisionFull)
        out.appendLE(o.maxRevisionFull)
        out += [0, 0, 0, 0, appendDigest ? 1 : 0]

        var checksum = ESPImage.checksumSeed
        var count = 0

        func save(_ address: UInt32, _ data: [UInt8], _ name: String, checksummed: Bool = true) throws(ImageError) {
            var data = data
            let pos = out.count
            if shaOffset >= pos && shaOffset < pos + data.count {
                let patch = shaOffset - pos
                guard patch >= 8, patch + 32 <= data.count else {
                    throw .layout("cannot place the ELF SHA-256 on a segment boundary (offset \(hex(shaOffset)), segment at \(hex(pos)), \(hex(data.count)) bytes)", hint: nil)
                }
                let at = patch - 8
                guard data[at..<(at + 32)].allSatisfy({ $0 == 0 }) else {
                    throw .layout("the bytes at ELF SHA-256 offset \(hex(shaOffset)) are not zero; refusing to overwrite them",
                                  hint: "IDF apps use --elf-sha256-offset 0xb0 (the app descriptor's app_elf_sha256 field)")
                }
                data.replaceSubrange(at..<(at + 32), with: elfSHA)
            }
            guard data.count % 4 == 0 else {
                throw .layout("\(name) segment length \(hex(data.count)) is not a multiple of 4", hint: nil)
            }
            guard data.count < 0x100_0000 else {
                throw .layout("\(name) segment length \(hex(data.count)) exceeds the 16 MB limit", hint: nil)
            }
            out.appendLE(address)
            out.appendLE(UInt32(data.count))
            out += data
            if checksummed { checksum = ESPImage.xorChecksum(data, seed: checksum) }
            count += 1
        }
        func flashData(_ data: [UInt8]) -> [UInt8] {
            guard rules.padLastMMUPage else { return data }
            let rem = (out.count + data.count + 8) % page
            return rem < 0x24 ? data + [UInt8](repeating: 0, count: 0x24 - rem) : data
        }

        if o.ramOnlyHeader {
            for seg in ram { try save(seg.address, seg.data, seg.name) }
            let ramCount = count
            let checksumAt = out.count | 15
            out += [UInt8](repeating: 0, count: checksumAt - out.count)
            out.append(checksum)
            // Flash segments in reverse, each placed (after a zero pad segment) where it will sit
            // on its MMU page once the image is written at the bootloader offset.
            for seg in flash.reversed() {
                var pad = ((Int(seg.address) - out.count - 16) % page + page) % page
                if pad < chip.bootloaderOffset { pad += page }
                pad -= chip.bootloaderOffset
                try save(0, [UInt8](repeating: 0, count: pad), seg.name, checksummed: false)
                try save(seg.address, flashData(seg.data), seg.name, checksummed: false)
            }
            out[1] = UInt8(truncatingIfNeeded: ramCount)
            if let n = o.padToSize, n > 0, out.count % n != 0 {
                out += [UInt8](repeating: 0xFF, count: n - out.count % n)
            }
            return out
        }

        while let seg = flash.first {
            let alignPast = Int(seg.address) % page - 8
            var pad = (page - out.count % page) + alignPast
            if pad == 0 || pad == page {
                pad = 0
            } else {
                pad -= 8
                if pad < 0 { pad += page }
            }
            if pad > 0 {
                if !ram.isEmpty && pad > 8 {
                    let take = min(pad, ram[0].data.count)
                    let head = Array(ram[0].data[0..<take])
                    let addr = ram[0].address
                    let name = ram[0].name
                    ram[0].data.removeFirst(take)
                    ram[0].address &+= UInt32(truncatingIfNeeded: pad)
                    if ram[0].data.isEmpty { ram.removeFirst() }
                    try save(addr, head, name)
                } else {
                    try save(0, [UInt8](repeating: 0, count: pad), seg.name)
                }
            } else {
                try save(seg.address, flashData(seg.data), seg.name)
                flash.removeFirst()
            }
        }
        for seg in ram { try save(seg.address, seg.data, seg.name) }

        if o.securePadV1 || o.securePadV2 {
            let alignPast = (out.count + 8) % page
            let after = o.securePadV2 ? 32 : 32 + 4 + 64 + 12
            var pad = (page - alignPast - 16 - after) % page
            if pad < 0 { pad += page }
            try save(0, [UInt8](repeating: 0, count: pad), "secure padding")
        }

        // Checksum in the last byte of a 16-byte block, then the segment count, then the digest.
        let checksumAt = out.count | 15
        out += [UInt8](repeating: 0, count: checksumAt - out.count)
        out.append(checksum)
        out[1] = UInt8(truncatingIfNeeded: count)
        if appendDigest {
            out += Array(SHA256.hash(data: out))
        }
        if let n = o.padToSize, n > 0, out.count % n != 0 {
            out += [UInt8](repeating: 0xFF, count: n - out.count % n)
        }
        return out
    }

    /// The MMU page size to lay flash-mapped segments out on (see ``ImageBuildOptions/mmuPageSize``).
    static func mmuPageSize(chip: ChipSpec, pieces: [Piece], requested: Int?) throws(ImageError) -> Int {
        if let r = requested {
            let allowed = chip.mmuPageSizes.isEmpty ? [chip.mmuPageSize] : chip.mmuPageSizes
            guard allowed.contains(r) else {
                throw .unknownParameter(kind: "MMU page size for \(chip.displayName)", value: "\(r / 1024)KB",
                                        allowed: allowed.map { "\($0 / 1024)KB" })
            }
            return r
        }
        guard !chip.mmuPageSizes.isEmpty,
              let desc = pieces.first(where: { $0.name.contains(".flash.appdesc") }), chip.isFlashMapped(desc.address),
              let app = AppDescriptor(desc.data[...]) else { return chip.mmuPageSize }
        if app.mmuPageSizeLog2 != 0 {
            let stated = app.mmuPageSizeLog2 < 32 ? 1 << Int(app.mmuPageSizeLog2) : 0
            guard chip.mmuPageSizes.contains(stated) else {
                throw .layout("the app descriptor states an MMU page size of 2^\(app.mmuPageSizeLog2) bytes, which \(chip.displayName) does not support",
                              hint: "pass --flash-mmu-page-size with one of " + chip.mmuPageSizes.map { "\($0 / 1024)KB" }.joined(separator: ", "))
            }
            return stated
        }
        // Without a stated size: the largest page the descriptor's address sits on, past the image
        // header (24 bytes) and its segment header (8 bytes).
        let base = Int(desc.address) - ESPImage.headerLength - 8
        return chip.mmuPageSizes.sorted(by: >).first { base % $0 == 0 } ?? chip.mmuPageSize
    }
}
