import VirtualDevice

extension BootChip {
    /// ESP32-S3: bootloader at 0x0; ROM wording from Espressif's documentation and published
    /// boot logs of the `esp32s3-20210327` ROM (not recorded here, see docs/virtual-device-chips.md).
    static let esp32s3 = BootChip(
        name: "esp32s3", fieldMap: .esp32s3, bootloaderOffset: 0x0,
        romBanner: ["ESP-ROM:esp32s3-20210327", "Build:Mar 27 2021"],
        powerOnReset: "rst:0x1 (POWERON)", softwareReset: "rst:0x3 (RTC_SW_SYS_RST)", spiBootStrapping: 0x8,
        romHaltLine: "ets_main.c 329", digestPurposes: [9, 10, 11], imageChipID: 9, idfTag: "boot.esp32s3",
        spiSpeedLabel: "Boot SPI Speed : ", multicore: true,
        // IROM (0x42000000…) and DROM (0x3C000000…), from the S3 TRM's memory map.
        mappedRanges: [0x4200_0000..<0x4400_0000, 0x3C00_0000..<0x3E00_0000])
}
