/// Register offsets (from ``EFuseFieldMap/controllerBase``) of the eFuse controller of the chips
/// described by an ``EFuseFieldMap`` (ESP32-S3, ESP32-C3), one row per chip. Read from the
/// register definitions espefuse 5.6.0 uses for these chips (facts only); the read registers of
/// the blocks come from the field map itself.
public struct FieldMapControllerRegisters: Sendable, Hashable {
    public let chip: String
    /// PGM_DATA0…7: the words to burn (BLOCK0 uses the first six).
    public let programData: UInt32
    /// PGM_CHECK_VALUE0…2: the 12 Reed–Solomon check bytes of a BLOCK1…10 burn.
    public let checkValue: UInt32
    /// RD_REPEAT_ERR0…4 (BLOCK0 error bits) and RD_RS_ERR0…1 (per-block RS error counts).
    public let repeatErrors: [UInt32]
    public let rsErrors: [UInt32]
    public let clock: UInt32
    public let conf: UInt32
    public let status: UInt32
    public let cmd: UInt32
    public let dacConf: UInt32
    public let readTiming: UInt32
    public let writeTiming1: UInt32
    public let writeTiming2: UInt32
    public let date: UInt32
    /// CONF values that arm a program / read command.
    public let programOpCode: UInt32 = 0x5A5A
    public let readOpCode: UInt32 = 0x5AA5
    /// CMD bits: READ_CMD, PGM_CMD; the block number to program is CMD bits 5:2.
    public let readCommand: UInt32 = 0x1
    public let programCommand: UInt32 = 0x2
    /// Reset values of the clock / DAC / timing / date registers: approximations (not recorded on a
    /// chip); they only matter to a reader, nothing in the model depends on them.
    public let clockReset: UInt32
    public let dacConfReset: UInt32
    public let readTimingReset: UInt32
    public let writeTiming1Reset: UInt32
    public let writeTiming2Reset: UInt32
    public let dateValue: UInt32

    public static let esp32c3 = FieldMapControllerRegisters(
        chip: "esp32c3", programData: 0x000, checkValue: 0x020,
        repeatErrors: [0x17C, 0x180, 0x184, 0x188, 0x190], rsErrors: [0x1C0, 0x1C4],
        clock: 0x1C8, conf: 0x1CC, status: 0x1D0, cmd: 0x1D4, dacConf: 0x1E8, readTiming: 0x1EC,
        writeTiming1: 0x1F0, writeTiming2: 0x1F4, date: 0x1FC,
        clockReset: 0x0000_0002, dacConfReset: 0x0001_FE1C, readTimingReset: 0x1200_0000,
        writeTiming1Reset: 0x0028_8000, writeTiming2Reset: 0x0000_0190, dateValue: 0x0200_7200)

    public static let esp32s3 = FieldMapControllerRegisters(
        chip: "esp32s3", programData: 0x000, checkValue: 0x020,
        repeatErrors: [0x17C, 0x180, 0x184, 0x188, 0x190], rsErrors: [0x1C0, 0x1C4],
        clock: 0x1C8, conf: 0x1CC, status: 0x1D0, cmd: 0x1D4, dacConf: 0x1E8, readTiming: 0x1EC,
        writeTiming1: 0x1F4, writeTiming2: 0x1F8, date: 0x1FC,
        clockReset: 0x0000_0002, dacConfReset: 0x0001_FE1C, readTimingReset: 0x1200_0000,
        writeTiming1Reset: 0x0028_8000, writeTiming2Reset: 0x0000_0190, dateValue: 0x0200_7200)

    public static let all: [FieldMapControllerRegisters] = [.esp32s3, .esp32c3]

    public static func named(_ chip: String) -> FieldMapControllerRegisters? { all.first { $0.chip == chip } }
}
