import ESPCore

extension ImageBuildOptions {
    /// Sets the options that `image elf2image` takes as text: `--flash-mmu-page-size` and
    /// `--pad-to-size` are sizes (32KB, 4KB …), `--elf-sha256-offset` a number (0xb0). A value
    /// that does not parse is a usage error naming the option.
    public mutating func set(mmuPageSize: String?, elfSHA256Offset: String?, padToSize: String?) throws {
        if let s = mmuPageSize {
            guard let v = NumberParsing.size(s), v > 0 else {
                throw UsageError("--flash-mmu-page-size '\(s)' is not a size", hint: "e.g. 32KB or 64KB")
            }
            self.mmuPageSize = v
        }
        if let s = elfSHA256Offset {
            guard let v = NumberParsing.integer(s), v >= 0 else {
                throw UsageError("--elf-sha256-offset '\(s)' is not a number", hint: "e.g. 0xb0")
            }
            self.elfSHA256Offset = v
        }
        if let s = padToSize {
            guard let v = NumberParsing.size(s), v > 0 else {
                throw UsageError("--pad-to-size '\(s)' is not a size", hint: "e.g. 4KB or 64KB")
            }
            self.padToSize = v
        }
    }
}

extension ImageBuilder {
    /// The image chip named `chip` (esp32, esp32s3 …); a usage error listing them otherwise.
    public static func imageChip(named chip: String) throws -> ChipSpec {
        guard let spec = ChipSpec.named(chip, in: ChipSpec.imageChips) else {
            throw UsageError("unknown chip '\(chip)'", hint: "choose one of: " + ChipSpec.imageChips.map(\.name).joined(separator: ", "))
        }
        return spec
    }

    /// `elf2image` from a file: reads the ELF at `elfPath` (bounded), builds the image for `chip`
    /// and writes it to `output` atomically. Returns the image; errors in the ELF name its file.
    public static func elf2image(elfPath: String, chip: ChipSpec, options: ImageBuildOptions, output: String) throws -> [UInt8] {
        let bytes = try BoundedFile.read(elfPath, limit: .elf)
        let image: [UInt8]
        do { image = try elf2image(elf: bytes, chip: chip, options: options) } catch {
            throw FileContextError(file: elfPath, underlying: error)
        }
        try AtomicFile.write(image, to: output)
        return image
    }
}
