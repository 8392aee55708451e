import ArgumentParser
import ESPCore
import ImageFormat

struct ImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "Build, inspect and retarget ESP firmware images.",
        discussion: """
            ESP firmware images (.bin) are what the ROM and the second-stage bootloader load: a \
            header with the flash parameters, segments with load addresses, a checksum and an \
            optional appended SHA-256, and for Secure Boot V2 a signature sector.

            Example:
              espforge image elf2image --chip esp32 --flash-size 4MB app.elf -o app.bin
              espforge image info app.bin
            """,
        subcommands: [ImageInfo.self, ImageElf2Image.self, ImageRetargetCommand.self]
    )
}

// MARK: - info

struct ImageInfo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show what an ESP image contains and whether it is intact.",
        discussion: """
            Reads images of every chip in the chip table (ESP32, -S2, -S3, -C2, -C3, -C5, -C6, -C61, \
            -H2, -H4, -P4) and ESP8266 images (header, segments and checksum only). \
            Prints the header (flash mode, frequency and size decoded), the extended header (chip, \
            revisions, hash-appended flag), every segment with its file offset, load address and \
            memory type, whether the checksum and the appended SHA-256 are valid, the application \
            or bootloader descriptor, and every Secure Boot V2 signature block found after the image.
            A truncated or corrupt file gives a one-line error naming the byte offset (exit 1).

            Example:
              espforge image info build/bootloader/bootloader.bin
              espforge image info --json build/app.bin
            """
    )

    @Argument(help: "The image file (.bin).")
    var file: String

    @Flag(help: "Print machine-readable JSON instead of text.")
    var json = false

    func run() throws {
        let bytes = try FileIO.read(file, limit: .flashContents)
        let parsed: AnyESPImage
        do { parsed = try AnyESPImage.parse(bytes) } catch { throw FileContextError(file: file, underlying: error) }
        let image: ESPImage
        switch parsed {
        case let .esp8266(i, reason):
            let report = ESP8266InfoReport(i, reason: reason)
            if json { try Output.printJSON(report) } else { print(report.text, terminator: "") }
            return
        case let .esp32Family(i):
            image = i
        }
        let sb = image.hasSignatureSector ? secureBootReport(file: bytes, sectorOffset: image.signatureSectorOffset) : nil
        let report = ImageInfoReport(image, secureBoot: sb)
        if json {
            try Output.printJSON(report)
        } else {
            print(report.text, terminator: "")
        }
    }
}

struct ImageInfoReport: Codable {
    struct Header: Codable {
        var segmentCount: Int
        var flashMode: String
        var flashModeCode: Int
        var flashSize: String
        var flashSizeCode: Int
        var flashFrequency: String
        var flashFrequencyCode: Int
        var entryPoint: String
    }
    struct ExtendedHeader: Codable {
        var chipID: Int
        var chip: String
        var wpPin: String
        var spiPinDrive: [Int]
        var minRevision: Int
        var minRevisionFull: String
        var maxRevisionFull: String
        var hashAppended: Bool
    }
    struct Segment: Codable {
        var index: Int
        var fileOffset: Int
        var dataOffset: Int
        var length: Int
        var loadAddress: String
        var memoryTypes: [String]
    }
    struct Integrity: Codable {
        var checksumOffset: Int
        var storedChecksum: String
        var computedChecksum: String
        var checksumValid: Bool
        var storedSHA256: String?
        var computedSHA256: String?
        var sha256Valid: Bool?
    }
    var fileSize: Int
    var header: Header
    var extendedHeader: ExtendedHeader
    var segments: [Segment]
    var integrity: Integrity
    var imageEnd: Int
    var signatureSectorOffset: Int
    var hasSignatureSector: Bool
    var bytesAfterImage: Int
    var trailingDataOffset: Int?
    var appDescriptor: AppDescriptor?
    var bootloaderDescriptor: BootloaderDescriptor?
    var secureBoot: SignatureSectorReport?
    var warnings: [String]

    init(_ i: ESPImage, secureBoot: SignatureSectorReport?) {
        func h(_ v: some BinaryInteger, _ w: Int) -> String { NumberParsing.hex(v, width: w) }
        func rev(_ v: UInt16) -> String { v == 0xFFFF ? "unset (0xffff)" : "v\(v / 100).\(v % 100)" }
        fileSize = i.fileLength
        header = Header(segmentCount: i.segmentCount,
                        flashMode: i.flashModeName?.uppercased() ?? "unknown",
                        flashModeCode: Int(i.flashModeCode),
                        flashSize: i.flashSizeName ?? "unknown",
                        flashSizeCode: Int(i.flashSizeCode >> 4),
                        flashFrequency: i.flashFrequencyName ?? "unknown",
                        flashFrequencyCode: Int(i.flashFrequencyCode),
                        entryPoint: h(i.entryPoint, 8))
        extendedHeader = ExtendedHeader(chipID: Int(i.chipID), chip: i.chip?.displayName ?? "unknown",
                                        wpPin: h(i.wpPin, 2) + (i.wpPin == 0xEE ? " (disabled)" : ""),
                                        spiPinDrive: i.spiPinDrive.flatMap { [Int($0 & 0xF), Int($0 >> 4)] },
                                        minRevision: Int(i.minRevision),
                                        minRevisionFull: rev(i.minRevisionFull), maxRevisionFull: rev(i.maxRevisionFull),
                                        hashAppended: i.hashAppended)
        segments = i.segments.map {
            Segment(index: $0.index, fileOffset: $0.headerOffset, dataOffset: $0.dataOffset, length: $0.length,
                    loadAddress: h($0.loadAddress, 8), memoryTypes: $0.memoryTypes)
        }
        integrity = Integrity(checksumOffset: i.checksumOffset, storedChecksum: h(i.storedChecksum, 2),
                              computedChecksum: h(i.computedChecksum, 2), checksumValid: i.checksumValid,
                              storedSHA256: i.storedDigest?.hexString, computedSHA256: i.computedDigest?.hexString,
                              sha256Valid: i.digestValid)
        imageEnd = i.imageEnd
        signatureSectorOffset = i.signatureSectorOffset
        hasSignatureSector = i.hasSignatureSector
        bytesAfterImage = i.fileLength - i.imageEnd
        trailingDataOffset = i.trailingDataOffset
        appDescriptor = i.appDescriptor
        bootloaderDescriptor = i.bootloaderDescriptor
        self.secureBoot = secureBoot
        warnings = i.warnings
    }

    var text: String {
        func h(_ v: some BinaryInteger, _ w: Int = 8) -> String { NumberParsing.hex(v, width: w) }
        var t = ""
        func line(_ s: String = "") { t += s + "\n" }
        line("File size:       \(fileSize) bytes")
        line("Chip:            \(extendedHeader.chip) (chip id \(extendedHeader.chipID))")
        line("Entry point:     \(header.entryPoint)")
        line("Flash mode:      \(header.flashMode)")
        line("Flash frequency: \(header.flashFrequency)")
        line("Flash size:      \(header.flashSize)")
        line("WP pin:          \(extendedHeader.wpPin)")
        line("Chip revision:   min \(extendedHeader.minRevisionFull) (legacy min_rev \(extendedHeader.minRevision)), max \(extendedHeader.maxRevisionFull)")
        line("Hash appended:   \(extendedHeader.hashAppended ? "yes" : "no")")
        line()
        line("Segments: \(header.segmentCount)")
        line(SegmentTable.header)
        for s in segments {
            line(SegmentTable.row(index: s.index, fileOffset: s.fileOffset, length: s.length, loadAddress: s.loadAddress, memoryTypes: s.memoryTypes))
        }
        line()
        line("Checksum:        \(integrity.storedChecksum) " + (integrity.checksumValid ? "(valid)" : "(INVALID, computed \(integrity.computedChecksum))"))
        if let stored = integrity.storedSHA256, let computed = integrity.computedSHA256 {
            line("SHA-256:         \(stored) " + (stored == computed ? "(valid)" : "(INVALID, computed \(computed))"))
        } else {
            line("SHA-256:         not appended")
        }
        line("Image end:       \(h(imageEnd))")
        if bytesAfterImage > 0 {
            if let t = trailingDataOffset {
                line("After the image: \(bytesAfterImage) bytes; data from \(h(t))" + (hasSignatureSector ? " (signature sector)" : " (not a Secure Boot V2 sector; e.g. a V1 signature)"))
            } else {
                line("After the image: \(bytesAfterImage) bytes of 0xFF padding")
            }
        }
        if let a = appDescriptor {
            line()
            line("Application descriptor:")
            line("  Project name:   \(a.projectName)")
            line("  App version:    \(a.version)")
            line("  ESP-IDF:        \(a.idfVersion)")
            line("  Compile time:   \(a.date) \(a.time)")
            line("  ELF SHA-256:    \(a.elfSHA256)")
            line("  Secure version: \(a.secureVersion)")
            line("  eFuse blk rev:  min \(a.minEfuseBlockRevisionFull / 100).\(a.minEfuseBlockRevisionFull % 100), max \(a.maxEfuseBlockRevisionFull / 100).\(a.maxEfuseBlockRevisionFull % 100)")
            if a.mmuPageSizeLog2 != 0 && a.mmuPageSizeLog2 < 32 { line("  MMU page size:  \((1 << Int(a.mmuPageSizeLog2)) / 1024) KB") }
        }
        if let b = bootloaderDescriptor {
            line()
            line("Bootloader descriptor:")
            line("  Version:        \(b.version)")
            line("  ESP-IDF:        \(b.idfVersion)")
            line("  Compile time:   \(b.dateTime)")
            line("  Secure version: \(b.secureVersion)")
        }
        line()
        if hasSignatureSector {
            line("Secure Boot V2 signature sector at \(h(signatureSectorOffset)):")
            if let sb = secureBoot {
                for b in sb.blocks {
                    line("  block \(b.index): \(b.scheme)")
                    line("    key digest:     \(b.keyDigest)")
                    line("    CRC:            \(b.crcValid ? "valid" : "INVALID")")
                    line("    image digest:   \(b.imageDigestMatches ? "matches" : "DOES NOT MATCH")")
                    if let v = b.signatureValid { line("    signature:      \(v ? "valid" : "INVALID")") }
                }
                if sb.blocks.isEmpty { line("  no signature blocks") }
                for p in sb.problems { line("  problem: \(p)") }
            } else {
                line("  (signature blocks not decoded)")
            }
        } else {
            line("Secure Boot V2 signature: none")
        }
        for w in warnings { line("warning: \(w)") }
        return t
    }
}

extension String {
    func leftPad(_ n: Int) -> String { String(repeating: " ", count: max(0, n - count)) + self }
}

// MARK: - elf2image

struct ImageElf2Image: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "elf2image",
        abstract: "Convert an ELF file into an ESP firmware image (byte-identical to esptool elf2image).",
        discussion: """
            Lays out the ELF's loadable sections as image segments exactly as esptool 5.6.0 does: \
            flash-mapped segments on MMU-page-aligned file offsets, RAM segments used as filler, \
            checksum and appended SHA-256. Defaults match esptool (qio, 1MB, 40m).

            Example:
              espforge image elf2image --chip esp32 --flash-mode dio --flash-freq 40m \\
                  --flash-size 4MB --elf-sha256-offset 0xb0 build/app.elf -o build/app.bin
            """
    )

    @Option(help: "Target chip (\(ChipSpec.imageChips.map(\.name).joined(separator: ", "))).")
    var chip: String

    @Option(name: .long, help: "Flash mode: qio, qout, dio, dout.")
    var flashMode: String = "qio"

    @Option(name: .long, help: "Flash frequency: 80m, 40m, 26m, 20m (default: the chip's code 0, 40m on ESP32).")
    var flashFreq: String?

    @Option(name: .long, help: "Flash size: 1MB … 16MB (larger on chips that support it).")
    var flashSize: String = "1MB"

    @Option(name: .long, help: "Minimum chip revision, legacy byte (0-255).")
    var minRev: UInt8 = 0

    @Option(name: .long, help: "Minimum chip revision, major*100+minor.")
    var minRevFull: UInt16 = 0

    @Option(name: .long, help: "Maximum chip revision, major*100+minor.")
    var maxRevFull: UInt16 = 65535

    @Flag(name: .long, help: "Pad so that, once signed, the Secure Boot V2 signature sector starts on a 64 KB boundary.")
    var securePadV2 = false

    @Flag(name: .long, help: "Pad for Secure Boot V1 signing (ESP32 only).")
    var securePad = false

    @Option(name: .long, help: "Write the ELF file's SHA-256 at this image offset (ESP-IDF apps: 0xb0).")
    var elfSha256Offset: String?

    @Flag(name: .long, help: "Do not append the SHA-256 digest after the checksum.")
    var dontAppendDigest = false

    @Flag(name: .long, help: "Build from ELF program headers instead of sections.")
    var useSegments = false

    @Option(name: .long, help: "Pad the image with 0xFF to a multiple of this size (e.g. 4KB).")
    var padToSize: String?

    @Option(name: .long, help: "MMU page size for flash-mapped segments (e.g. 32KB; ESP32-C2/C6/C61/H2/H4 only; default: from the app descriptor, as esptool).")
    var flashMmuPageSize: String?

    @Flag(name: .long, help: "Header and checksum cover only the RAM segments (written first); flash segments follow, unseen by the ROM; no SHA-256 (as esptool).")
    var ramOnlyHeader = false

    @Argument(help: "The ELF file.")
    var elf: String

    @Option(name: .shortAndLong, help: "Output image file.")
    var output: String

    func run() throws {
        guard let spec = ChipSpec.named(chip, in: ChipSpec.imageChips) else {
            throw UsageError("unknown chip '\(chip)'", hint: "choose one of: " + ChipSpec.imageChips.map(\.name).joined(separator: ", "))
        }
        var o = ImageBuildOptions()
        if let s = flashMmuPageSize {
            guard let v = NumberParsing.size(s), v > 0 else {
                throw UsageError("--flash-mmu-page-size '\(s)' is not a size", hint: "e.g. 32KB or 64KB")
            }
            o.mmuPageSize = v
        }
        o.flashMode = flashMode.lowercased()
        o.flashFrequency = flashFreq?.lowercased()
        o.flashSize = flashSize.uppercased()
        o.minRevision = minRev
        o.minRevisionFull = minRevFull
        o.maxRevisionFull = maxRevFull
        o.securePadV2 = securePadV2
        o.securePadV1 = securePad
        o.appendDigest = !dontAppendDigest
        o.useSegments = useSegments
        o.ramOnlyHeader = ramOnlyHeader
        if let s = elfSha256Offset {
            guard let v = NumberParsing.integer(s), v >= 0 else {
                throw UsageError("--elf-sha256-offset '\(s)' is not a number", hint: "e.g. 0xb0")
            }
            o.elfSHA256Offset = v
        }
        if let s = padToSize {
            guard let v = NumberParsing.size(s), v > 0 else {
                throw UsageError("--pad-to-size '\(s)' is not a size", hint: "e.g. 4KB or 64KB")
            }
            o.padToSize = v
        }
        let bytes = try FileIO.read(elf, limit: .elf)
        let image: [UInt8]
        do { image = try ImageBuilder.elf2image(elf: bytes, chip: spec, options: o) } catch {
            throw FileContextError(file: elf, underlying: error)
        }
        try FileIO.write(image, to: output)
        print("Wrote \(output): \(image.count) bytes, \(image.count > 1 ? Int(image[1]) : 0) segments")
    }
}

// MARK: - retarget

struct ImageRetargetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retarget",
        abstract: "Rewrite the flash size/mode/frequency in an unsigned image's header.",
        discussion: """
            Changes header bytes 2 and 3 and recomputes the appended SHA-256 (the checksum covers \
            only segment data and does not change). Options left out keep their current value.
            A signed image is refused: its signature covers the header, so the rewritten image \
            would not boot with Secure Boot enabled. Retarget the unsigned image and sign again, \
            or pass --strip-signature to drop the signature (and its padding) and re-sign after.

            Example:
              espforge image retarget --flash-size 4MB --flash-mode dio bootloader.bin -o bootloader-4mb.bin
            """
    )

    @Option(name: .long, help: "New flash size (e.g. 4MB).")
    var flashSize: String

    @Option(name: .long, help: "New flash mode: qio, qout, dio, dout.")
    var flashMode: String?

    @Option(name: .long, help: "New flash frequency: 80m, 40m, 26m, 20m.")
    var flashFreq: String?

    @Flag(name: .long, help: "Drop a signature found after the image instead of refusing.")
    var stripSignature = false

    @Argument(help: "The input image.")
    var input: String

    @Option(name: .shortAndLong, help: "Output image file.")
    var output: String

    func run() throws {
        let bytes = try FileIO.read(input, limit: .flashContents)
        let out: [UInt8]
        do {
            out = try ImageRetarget.retarget(bytes, parameters: FlashParameters(mode: flashMode?.lowercased(),
                                                                                frequency: flashFreq?.lowercased(),
                                                                                size: flashSize.uppercased()),
                                             stripSignature: stripSignature)
        } catch {
            throw FileContextError(file: input, underlying: error)
        }
        try FileIO.write(out, to: output)
        if stripSignature && out.count < bytes.count {
            ErrorRenderer.warn("dropped \(bytes.count - out.count) bytes after the image (signature and padding); sign \(output) again before use")
        }
        print("Wrote \(output): \(out.count) bytes")
    }
}

/// The segment table of `image info`'s text, shared by every image kind.
enum SegmentTable {
    static let header = "  #  file offs   length      load addr   memory type"

    static func row(index: Int, fileOffset: Int, length: Int, loadAddress: String, memoryTypes: [String]) -> String {
        let types = memoryTypes.isEmpty ? "-" : memoryTypes.joined(separator: ", ")
        return "\(String(index).leftPad(3))  \(NumberParsing.hex(fileOffset, width: 8))  \(NumberParsing.hex(length, width: 8))  \(loadAddress)  \(types)"
    }
}
