import ESPCore
import ImageFormat

/// The per-chip facts of the demo's synthesized firmware and line, one row per chip
/// (`DemoChip.swift` for the ESP32, `DemoChip+ESP32S3.swift`, `DemoChip+ESP32C3.swift`): the
/// ELF machine, where each section of an ESP-IDF bootloader and app lives in the chip's memory
/// map, the flash settings and revision range elf2image writes into the headers, and what the
/// manifest and sdkconfig say for the chip.
public struct DemoChip: Sendable {
    /// One section of a synthesized ELF.
    public struct Section: Sendable {
        /// Where the section is loaded.
        public enum Placement: Sendable {
            /// At this address.
            case at(UInt32)
            /// At this address plus the 64 KiB MMU pages `.flash.text` takes: on chips whose
            /// instruction and data buses map flash through one MMU table (S3, C3), ESP-IDF's
            /// linker puts read-only data behind the code's pages (`.flash_rodata_dummy`).
            case afterFlashText(UInt32)
        }
        /// What the section holds (filler is deterministic, see ``DemoFirmware/filler(_:seed:)``).
        public enum Content: Sendable {
            /// The bootloader's banner format text, then filler up to `size` bytes.
            case banner(size: Int, seed: UInt64)
            /// Random-looking bytes.
            case filler(Int, seed: UInt64)
            /// Code-like bytes, the app's code size long (``DemoFirmware/code(_:seed:)``).
            case code(seed: UInt64)
            /// `esp_app_desc_t` (256 bytes).
            case appDescriptor
            /// `esp_bootloader_desc_t` (80 bytes; ESP-IDF v5.2 and later).
            case bootloaderDescriptor
        }
        public var name: String
        public var placement: Placement
        public var content: Content
        /// `sh_flags`: 2 = ALLOC (read-only data), 3 = WRITE|ALLOC, 6 = ALLOC|EXECINSTR.
        public var flags: UInt32
        public init(_ name: String, _ placement: Placement, _ content: Content, flags: UInt32) {
            self.name = name; self.placement = placement; self.content = content; self.flags = flags
        }
    }

    /// The chip (image chip id, bootloader offset, flash codes).
    public let spec: ChipSpec
    /// ELF `e_machine` (Xtensa 94, RISC-V 243) and `e_flags` (RISC-V: compressed instructions).
    public let elfMachine: UInt16
    public let elfFlags: UInt32
    /// Flash settings in the image headers and the manifest.
    public let flashMode: String
    public let flashFrequency: String
    /// elf2image's `--min-rev`, `--min-rev-full`, `--max-rev-full` (ESP-IDF's defaults for the chip).
    public let imageMinRevision: UInt8
    public let imageMinRevisionFull: UInt16
    public let imageMaxRevisionFull: UInt16
    /// The manifest's `chip.min_revision` (a major revision; the virtual devices have it).
    public let manifestMinRevision: Int
    /// Bootloader and app: entry point and sections, in ELF order.
    public let bootloaderEntry: UInt32
    public let bootloaderSections: [Section]
    public let appEntry: UInt32
    public let appSections: [Section]
    /// Lines the demo's sdkconfig starts with (the target; empty for the ESP32 demo, whose files
    /// predate the chip choice and stay as they were).
    public let sdkconfigHead: String
    /// eFuses the manifest burns at the end (names as `espefuse summary` prints them for the chip).
    public let finalBurn: [String]

    /// The chips `espforge demo --chip` offers, in the order help lists them.
    public static let all: [DemoChip] = [.esp32, .esp32s3, .esp32c3]

    /// The row for a chip name (`esp32s3`, `ESP32-S3`, …); nil for chips the demo does not offer.
    public static func named(_ name: String) -> DemoChip? {
        guard let spec = ChipSpec.named(name) else { return nil }
        return all.first { $0.spec.name == spec.name }
    }

    /// The classic ESP32 demo (rev 3): its images are pinned by a test and must not change.
    public static let esp32 = DemoChip(
        spec: .esp32, elfMachine: 94, elfFlags: 0, flashMode: "dio", flashFrequency: "40m",
        imageMinRevision: 0, imageMinRevisionFull: 0, imageMaxRevisionFull: 65535, manifestMinRevision: 3,
        bootloaderEntry: 0x4007_8000,
        bootloaderSections: [
            Section(".dram0.rodata", .at(0x3FFF_0000), .banner(size: 2048, seed: 11), flags: 3),
            Section(".iram_loader.text", .at(0x4007_8000), .filler(8192, seed: 12), flags: 6),
            Section(".iram.text", .at(0x4007_C000), .filler(4096, seed: 13), flags: 6),
        ],
        appEntry: 0x4008_0000,
        appSections: [
            Section(".flash.appdesc", .at(0x3F40_0020), .appDescriptor, flags: 2),
            Section(".flash.rodata", .at(0x3F40_0120), .filler(24 * 1024, seed: 21), flags: 2),
            Section(".dram0.data", .at(0x3FFB_0000), .filler(4 * 1024, seed: 22), flags: 3),
            Section(".iram0.text", .at(0x4008_0000), .filler(12 * 1024, seed: 23), flags: 6),
            Section(".flash.text", .at(0x400D_0020), .code(seed: 24), flags: 6),
        ],
        sdkconfigHead: "",
        finalBurn: ["JTAG_DISABLE", "DISABLE_DL_DECRYPT", "DISABLE_DL_CACHE"])
}
