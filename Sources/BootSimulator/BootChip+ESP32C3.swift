import VirtualDevice

extension BootChip {
    /// ESP32-C3: bootloader at 0x0; ROM wording from Espressif's documentation and published
    /// boot logs of the `esp32c3-api1-20210207` ROM (not recorded here; the halt line's source
    /// position is the S3's, an assumption, see docs/virtual-device-chips.md).
    static let esp32c3 = BootChip(
        name: "esp32c3", fieldMap: .esp32c3, bootloaderOffset: 0x0,
        romBanner: ["ESP-ROM:esp32c3-api1-20210207", "Build:Feb  7 2021"],
        powerOnReset: "rst:0x1 (POWERON)", softwareReset: "rst:0x3 (RTC_SW_SYS_RST)", spiBootStrapping: 0xC,
        romHaltLine: "ets_main.c 329", digestPurposes: [9, 10, 11], imageChipID: 5, idfTag: "boot.esp32c3",
        // IROM (0x42000000…) and DROM (0x3C000000…), from the C3 TRM's memory map.
        mappedRanges: [0x4200_0000..<0x4280_0000, 0x3C00_0000..<0x3C80_0000])
}
