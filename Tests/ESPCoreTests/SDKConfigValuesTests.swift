import ESPCore
import Testing

/// The one sdkconfig parser (`SDKConfigValues`): the rules every reader now shares.
@Suite("sdkconfig parser")
struct SDKConfigValuesTests {
    @Test func kconfigTextForms() {
        let text = "# Espressif IoT Development Framework (ESP-IDF) 5.1.2 Project Configuration\r\n"
            + "CONFIG_A=y\r\n"
            + "# CONFIG_B is not set\r"
            + "  CONFIG_C = 0x8000  \n"
            + "CONFIG_D=\"say \\\"hi\\\" C:\\\\x\"\n"
            + "garbage\n=x\nNOT A=KEY\n# comment is not set\n#CONFIG_E is not set\n"
            + "CONFIG_A=n"
        let c = SDKConfigValues.parse(text: text)
        #expect(c.idfVersion == "5.1.2")
        #expect(c.values == ["CONFIG_A": "n", "CONFIG_B": "n", "CONFIG_C": "0x8000", "CONFIG_D": #"say "hi" C:\x"#, "CONFIG_E": "n"])
        // Line numbers count \r\n, \r and \n each as one line end; a later setting wins.
        #expect(c.lines["CONFIG_B"] == 3 && c.lines["CONFIG_C"] == 4 && c.lines["CONFIG_E"] == 10 && c.lines["CONFIG_A"] == 11)
    }

    @Test func jsonFormMapsToTheSameNames() {
        let c = SDKConfigValues.parse(json: ["SECURE_BOOT": true, "PARTITION_TABLE_OFFSET": 32768, "IDF_TARGET": "esp32", "X": false])
        #expect(c.values == ["CONFIG_SECURE_BOOT": "y", "CONFIG_PARTITION_TABLE_OFFSET": "32768", "CONFIG_IDF_TARGET": "esp32", "CONFIG_X": "n"])
    }
}
