import ArgumentParser
import ESPCore
import ImageFormat

struct ImageCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image", abstract: "Build, inspect and retarget ESP firmware images.",
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

struct ImageInfo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info", abstract: "Show what an ESP image contains and whether it is intact.",
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

    @Argument(help: "The image file (.bin).") var file: String
    @Flag(help: "Print machine-readable JSON instead of text.") var json = false

    func run() throws {
        let bytes = try FileIO.read(file, limit: .flashContents)
        let report: ImageInspection
        do { report = try ImageInspection.inspect(bytes) } catch { throw FileContextError(file: file, underlying: error) }
        if json { print(try report.json()) } else { print(report.text, terminator: "") }
    }
}

struct ImageElf2Image: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "elf2image", abstract: "Convert an ELF file into an ESP firmware image (byte-identical to esptool elf2image).",
        discussion: """
            Lays out the ELF's loadable sections as image segments exactly as esptool 5.6.0 does: \
            flash-mapped segments on MMU-page-aligned file offsets, RAM segments used as filler, \
            checksum and appended SHA-256. Defaults match esptool (qio, 1MB, 40m).

            Example:
              espforge image elf2image --chip esp32 --flash-mode dio --flash-freq 40m \\
                  --flash-size 4MB --elf-sha256-offset 0xb0 build/app.elf -o build/app.bin
            """
    )

    @Option(help: "Target chip (\(ChipSpec.imageChips.map(\.name).joined(separator: ", "))).") var chip: String
    @Option(name: .long, help: "Flash mode: qio, qout, dio, dout.") var flashMode: String = "qio"
    @Option(name: .long, help: "Flash frequency: 80m, 40m, 26m, 20m (default: the chip's code 0, 40m on ESP32).") var flashFreq: String?
    @Option(name: .long, help: "Flash size: 1MB … 16MB (larger on chips that support it).") var flashSize: String = "1MB"
    @Option(name: .long, help: "Minimum chip revision, legacy byte (0-255).") var minRev: UInt8 = 0
    @Option(name: .long, help: "Minimum chip revision, major*100+minor.") var minRevFull: UInt16 = 0
    @Option(name: .long, help: "Maximum chip revision, major*100+minor.") var maxRevFull: UInt16 = 65535
    @Flag(name: .long, help: "Pad so that, once signed, the Secure Boot V2 signature sector starts on a 64 KB boundary.") var securePadV2 = false
    @Flag(name: .long, help: "Pad for Secure Boot V1 signing (ESP32 only).") var securePad = false
    @Option(name: .long, help: "Write the ELF file's SHA-256 at this image offset (ESP-IDF apps: 0xb0).") var elfSha256Offset: String?
    @Flag(name: .long, help: "Do not append the SHA-256 digest after the checksum.") var dontAppendDigest = false
    @Flag(name: .long, help: "Build from ELF program headers instead of sections.") var useSegments = false
    @Option(name: .long, help: "Pad the image with 0xFF to a multiple of this size (e.g. 4KB).") var padToSize: String?
    @Option(name: .long, help: "MMU page size for flash-mapped segments (e.g. 32KB; ESP32-C2/C6/C61/H2/H4 only; default: from the app descriptor, as esptool).")
    var flashMmuPageSize: String?
    @Flag(name: .long, help: "Header and checksum cover only the RAM segments (written first); flash segments follow, unseen by the ROM; no SHA-256 (as esptool).")
    var ramOnlyHeader = false
    @Argument(help: "The ELF file.") var elf: String
    @Option(name: .shortAndLong, help: "Output image file.") var output: String

    func run() throws {
        let spec = try ImageBuilder.imageChip(named: chip)
        var o = ImageBuildOptions()
        try o.set(mmuPageSize: flashMmuPageSize, elfSHA256Offset: elfSha256Offset, padToSize: padToSize)
        o.flashMode = flashMode.lowercased()
        o.flashFrequency = flashFreq?.lowercased()
        o.flashSize = flashSize.uppercased()
        (o.minRevision, o.minRevisionFull, o.maxRevisionFull) = (minRev, minRevFull, maxRevFull)
        (o.securePadV2, o.securePadV1, o.appendDigest) = (securePadV2, securePad, !dontAppendDigest)
        (o.useSegments, o.ramOnlyHeader) = (useSegments, ramOnlyHeader)
        let image = try ImageBuilder.elf2image(elfPath: elf, chip: spec, options: o, output: output)
        print("Wrote \(output): \(image.count) bytes, \(image.count > 1 ? Int(image[1]) : 0) segments")
    }
}

struct ImageRetargetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "retarget", abstract: "Rewrite the flash size/mode/frequency in an unsigned image's header.",
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

    @Option(name: .long, help: "New flash size (e.g. 4MB).") var flashSize: String
    @Option(name: .long, help: "New flash mode: qio, qout, dio, dout.") var flashMode: String?
    @Option(name: .long, help: "New flash frequency: 80m, 40m, 26m, 20m.") var flashFreq: String?
    @Flag(name: .long, help: "Drop a signature found after the image instead of refusing.") var stripSignature = false
    @Argument(help: "The input image.") var input: String
    @Option(name: .shortAndLong, help: "Output image file.") var output: String

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
