extension DemoChip {
    /// ESP32-S3 (Xtensa LX7, dual core). Addresses from the S3 memory map (``ChipSpec/esp32s3``)
    /// and the ESP-IDF v5.2.2 hello-world images in ../shared/fixtures/espressif/chips/ESP32_S3:
    /// the bootloader's DRAM from 0x3FCE3810 (descriptor first), its `.iram.text` at 0x403C9700
    /// holding the entry 0x403C98FC, `.iram_loader.text` at 0x403CC700; the app's vectors at
    /// 0x40374000 (the first 16 KiB of SRAM0 are cache), its entry 0x40374BC4, data from the
    /// first DRAM address 0x3FC88000, code at 0x42000020 and read-only data behind the code's
    /// MMU pages at 0x3C0x0020. ESP-IDF's defaults: 80 MHz DIO flash, chip revisions v0.0–v0.99.
    public static let esp32s3 = DemoChip(
        spec: .esp32s3, elfMachine: 94, elfFlags: 0, flashMode: "dio", flashFrequency: "80m",
        imageMinRevision: 0, imageMinRevisionFull: 0, imageMaxRevisionFull: 99, manifestMinRevision: 0,
        bootloaderEntry: 0x403C_98FC,
        bootloaderSections: [
            Section(".dram0.bootdesc", .at(0x3FCE_3810), .bootloaderDescriptor, flags: 3),
            Section(".dram0.rodata", .at(0x3FCE_3860), .banner(size: 2048, seed: 31), flags: 3),
            Section(".iram.text", .at(0x403C_9700), .filler(4096, seed: 32), flags: 6),
            Section(".iram_loader.text", .at(0x403C_C700), .filler(8192, seed: 33), flags: 6),
        ],
        appEntry: 0x4037_4BC4,
        appSections: [
            Section(".flash.appdesc", .afterFlashText(0x3C00_0020), .appDescriptor, flags: 2),
            Section(".flash.rodata", .afterFlashText(0x3C00_0120), .filler(24 * 1024, seed: 41), flags: 2),
            Section(".dram0.data", .at(0x3FC8_8000), .filler(4 * 1024, seed: 42), flags: 3),
            Section(".iram0.vectors", .at(0x4037_4000), .filler(0x400, seed: 43), flags: 6),
            Section(".iram0.text", .at(0x4037_4400), .filler(12 * 1024, seed: 44), flags: 6),
            Section(".flash.text", .at(0x4200_0020), .code(seed: 45), flags: 6),
        ],
        sdkconfigHead: "CONFIG_IDF_TARGET=\"esp32s3\"\n",
        // Download mode only over UART (the line's port): none through USB-Serial-JTAG or USB-OTG.
        // Not the JTAG and download-cache fuses the ESP32 demo burns last: on the S3 the
        // bootloader burns those itself with Secure Boot, and locks their group (WR_DIS bit 2)
        // when it enables flash encryption.
        finalBurn: ["DIS_USB_SERIAL_JTAG_DOWNLOAD_MODE", "DIS_USB_OTG_DOWNLOAD_MODE"])
}
