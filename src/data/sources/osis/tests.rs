use super::osis_to_text;

#[test]
fn fragment_with_note_title_entities_and_paragraphs() {
    let xml = concat!(
        r#"<div sID="gen1" type="book"/> <title type="main">The &quot;First&quot; Book</title> "#,
        r#"<chapter n="1" osisID="Gen.1" sID="Gen.1"/><div sID="gen2" type="x-p"/>"#,
        r#"<w lemma="strong:H0430">In</w> the   beginning, <w>God</w><note placement="foot">"#,
        r#"<reference type="annotateRef">1:1 </reference>Hebrew: <catchWord>Elohim</catchWord></note>"#,
        r#"<w>created</w> the heavens &amp; the earth.<note n="a"/> <div eID="gen2" type="x-p"/> "#,
        "<div sID=\"gen3\" type=\"x-p\"/>\tAnd &lt;darkness&gt; was &#65;&#x42;&apos;s &unknown; ",
        "&amp&amp.<lb/>New <hi type=\"italic\">para</hi>.<p>Third</p> <lg sID=\"x\"/>",
        r#"<l level="1" sID="a"/>Line one,<l eID="a"/> <l level="2" sID="b"/>line two.<l eID="b"/><lg eID="x"/>"#,
        r#"<div type="x-milestone" subType="x-preverse" sID="pv1"/>Still<!-- c > --> here."#,
    );
    let expected = "The \"First\" Book\n\n\
                    In the beginning, God created the heavens & the earth.\n\n\
                    And <darkness> was AB's &unknown; &amp&amp.\n\n\
                    New para.\n\n\
                    Third\n\n\
                    Line one,\n\
                    line two.\n\n\
                    Still here.";
    assert_eq!(osis_to_text(xml), expected);
}

#[test]
fn note_removal_keeps_punctuation_attached() {
    let xml = r#"his<note>a</note>’s son<note>b</note>, and him<note>c</note> go. “<note>d</note>Come"#;
    assert_eq!(osis_to_text(xml), "his’s son, and him go. “Come");
    let xml = r#"the Kingdom.</q><q who="Jesus">That which<q marker="“">is</q>."#;
    assert_eq!(osis_to_text(xml), "the Kingdom. That which is.");
}

#[test]
fn table_cells_rows_and_unterminated_input() {
    let xml = "<table> <row><cell>God creates.</cell><cell>(1-2)</cell></row>\
               <row><cell>Light.</cell><cell>(3-5)</cell></row> </table> Tail <note>never closed";
    assert_eq!(osis_to_text(xml), "God creates. (1-2)\nLight. (3-5)\n\nTail");
    assert_eq!(osis_to_text("a <b"), "a");
    assert_eq!(osis_to_text("   "), "");
}
