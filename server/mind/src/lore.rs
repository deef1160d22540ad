//! World lore that designers write under `assets/lore/`: reading the files and
//! cutting them into heading-aware chunks of about 120–200 words, ready to be
//! embedded, stored (`hearth_db::lore`) and searched into prompts. Pure,
//! except [`load_dir`], which only reads files.
//!
//! A chunk never crosses a heading: each carries its *heading trail*, the
//! document title and the headings above it ("Valley history > The flood").
//! Paragraphs of a section are packed together up to
//! [`ChunkConfig::target_words`]; a paragraph longer than
//! [`ChunkConfig::max_words`] is split at sentence boundaries (Unicode
//! UAX #29) into balanced pieces, each repeating the last sentence of the one
//! before (the overlap) so no piece starts without context.
//!
//! ```
//! use hearth_mind::lore::LoreDocument;
//! let doc = LoreDocument::parse("history.md", "# Valley history\n\n## The flood\n\nThe river rose in the spring of '87.");
//! assert_eq!(doc.title, "Valley history");
//! assert_eq!(doc.chunks[0].trail_text(), "Valley history > The flood");
//! assert_eq!(doc.chunks[0].body, "The river rose in the spring of '87.");
//! ```

use std::path::{Path, PathBuf};

use hearth_db::lore::{LoreChunkRow, LoreDocumentRow};
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
use sha2::{Digest, Sha256};
use unicode_segmentation::UnicodeSegmentation;

/// Joins the headings of a trail.
pub const TRAIL_SEPARATOR: &str = " > ";

/// Bumped whenever chunking changes, so that stored documents are re-chunked
/// (it is part of [`LoreDocument::content_hash`]).
const CHUNKER_VERSION: &str = "hearth-lore-chunker-1";

/// Longest heading kept in a trail, in characters (longer ones are cut).
const MAX_HEADING_CHARS: usize = 200;

/// How documents are cut into chunks. The defaults suit sentence-embedding
/// models such as all-MiniLM-L6-v2, which read at most 256 word pieces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkConfig {
    /// A chunk stops taking paragraphs once it has this many words, and a
    /// long paragraph is split into pieces of about this size.
    pub target_words: usize,
    /// No chunk body has more words than this, overlap included.
    pub max_words: usize,
    /// When a long paragraph is split, each piece after the first starts
    /// with the last sentences of the previous one, up to this many words
    /// (none when the last sentence alone is longer).
    pub overlap_words: usize,
    /// No chunk body has more characters than this (it guards against
    /// "words" thousands of characters long; the database takes 16,000).
    pub max_chars: usize,
}

impl Default for ChunkConfig {
    fn default() -> Self {
        Self {
            target_words: 160,
            max_words: 200,
            overlap_words: 30,
            max_chars: 4000,
        }
    }
}

/// How a file's text is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// CommonMark with tables: headings make the trail.
    Markdown,
    /// Plain text: paragraphs are separated by blank lines, no headings.
    Text,
}

impl Format {
    /// The format of a lore file by its extension (`.md`, `.markdown`,
    /// `.txt`, any case); `None` for files that are not lore.
    pub fn of(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "md" | "markdown" => Some(Format::Markdown),
            "txt" => Some(Format::Text),
            _ => None,
        }
    }
}

/// One lore file, chunked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoreDocument {
    /// Path relative to the lore directory, with `/` separators.
    pub path: String,
    /// The first heading, or the file name without its extension.
    pub title: String,
    /// SHA-256 of the chunker version, the [`ChunkConfig`] and the file's
    /// bytes: it changes when the text or the way it is chunked changes.
    pub content_hash: [u8; 32],
    pub chunks: Vec<LoreChunk>,
}

/// A piece of a document under one heading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoreChunk {
    /// 0, 1, 2… in document order.
    pub ordinal: u32,
    /// The document title, then the headings above this chunk.
    pub trail: Vec<String>,
    /// The chunk's text: paragraphs separated by blank lines, list items by
    /// line breaks; whitespace inside a paragraph collapsed. Never empty.
    pub body: String,
}

impl LoreChunk {
    /// The trail as one line, e.g. "Valley history > The flood".
    pub fn trail_text(&self) -> String {
        self.trail.join(TRAIL_SEPARATOR)
    }

    /// Words in the body.
    pub fn words(&self) -> usize {
        self.body.split_whitespace().count()
    }

    /// What is stored, embedded and searched: the trail line, a blank line,
    /// then the body. [`split_stored_text`] takes it apart again.
    pub fn stored_text(&self) -> String {
        format!("{}\n\n{}", self.trail_text(), self.body)
    }
}

/// Splits a chunk's stored text ([`LoreChunk::stored_text`]) into its trail
/// line and its body. Text without a trail line is all body.
///
/// ```
/// use hearth_mind::lore::split_stored_text;
/// assert_eq!(split_stored_text("Places > Mill\n\nIt burned."), ("Places > Mill", "It burned."));
/// assert_eq!(split_stored_text("just text"), ("", "just text"));
/// ```
pub fn split_stored_text(text: &str) -> (&str, &str) {
    match text.split_once("\n\n") {
        Some((trail, body)) if !trail.contains('\n') => (trail, body),
        _ => ("", text),
    }
}

impl LoreDocument {
    /// Chunks `source`, the text of the file at `path` (relative to the lore
    /// directory; its extension picks the [`Format`], Markdown by default),
    /// with the default [`ChunkConfig`].
    pub fn parse(path: &str, source: &str) -> LoreDocument {
        let format = Format::of(Path::new(path)).unwrap_or(Format::Markdown);
        Self::parse_with(path, source, format, &ChunkConfig::default())
    }

    /// Chunks `source` read as `format` with `config`. Deterministic: the same
    /// arguments always give the same document.
    pub fn parse_with(
        path: &str,
        source: &str,
        format: Format,
        config: &ChunkConfig,
    ) -> LoreDocument {
        let config = sane(config);
        let blocks = match format {
            Format::Markdown => markdown_blocks(source),
            Format::Text => text_blocks(source),
        };
        let title = blocks
            .iter()
            .find_map(|b| match b {
                Block::Heading(_, text) => Some(text.clone()),
                Block::Text(_) => None,
            })
            .unwrap_or_else(|| file_stem(path));
        let mut chunks = Vec::new();
        let mut stack: Vec<(u8, String)> = Vec::new();
        let mut section: Vec<String> = Vec::new();
        for block in blocks {
            match block {
                Block::Heading(level, text) => {
                    pack_section(&trail(&title, &stack), &section, &config, &mut chunks);
                    section.clear();
                    while stack.last().is_some_and(|(l, _)| *l >= level) {
                        stack.pop();
                    }
                    stack.push((level, text));
                }
                Block::Text(text) => section.push(text),
            }
        }
        pack_section(&trail(&title, &stack), &section, &config, &mut chunks);
        LoreDocument {
            path: path.to_owned(),
            title,
            content_hash: content_hash(source, format, &config),
            chunks,
        }
    }

    /// The rows `hearth_db::lore::sync_document` stores.
    pub fn rows(&self) -> (LoreDocumentRow, Vec<LoreChunkRow>) {
        let doc = LoreDocumentRow {
            path: self.path.clone(),
            title: self.title.clone(),
            content_hash: self.content_hash.to_vec(),
        };
        let chunks = self
            .chunks
            .iter()
            .map(|c| LoreChunkRow {
                ordinal: i32::try_from(c.ordinal).unwrap_or(i32::MAX),
                text: c.stored_text(),
            })
            .collect();
        (doc, chunks)
    }
}

/// Why lore could not be read. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoreError {
    #[error("cannot read the lore directory at {}: {source}", path.display())]
    Walk {
        path: PathBuf,
        #[source]
        source: walkdir::Error,
    },
    #[error("cannot read lore file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "lore file {} is not valid UTF-8 (line {line}, byte {byte}); save it as UTF-8",
        path.display()
    )]
    NotUtf8 {
        path: PathBuf,
        /// 1-based line of the first invalid byte.
        line: usize,
        /// 0-based offset of the first invalid byte.
        byte: usize,
    },
    #[error("lore file name {} is not valid UTF-8; rename it", path.display())]
    BadName { path: PathBuf },
}

/// Reads and chunks every `*.md`, `*.markdown` and `*.txt` file under `root`
/// (recursively; hidden files and directories are skipped), in path order,
/// with the default [`ChunkConfig`]. A missing `root` is an error: callers
/// that treat "no lore directory" as "no lore" check for it first.
pub fn load_dir(root: &Path) -> Result<Vec<LoreDocument>, LoreError> {
    load_dir_with(root, &ChunkConfig::default())
}

/// [`load_dir`] with a chunking configuration.
pub fn load_dir_with(root: &Path, config: &ChunkConfig) -> Result<Vec<LoreDocument>, LoreError> {
    let mut docs = Vec::new();
    let walker = walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
    for entry in walker {
        let entry = entry.map_err(|source| LoreError::Walk {
            path: source.path().unwrap_or(root).to_path_buf(),
            source,
        })?;
        if !entry.file_type().is_file() {
            continue;
        }
        let path = entry.path();
        let Some(format) = Format::of(path) else {
            continue;
        };
        let relative = path
            .strip_prefix(root)
            .unwrap_or(path)
            .components()
            .map(|c| c.as_os_str().to_str())
            .collect::<Option<Vec<&str>>>()
            .ok_or_else(|| LoreError::BadName {
                path: path.to_path_buf(),
            })?
            .join("/");
        let bytes = std::fs::read(path).map_err(|source| LoreError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let byte = e.utf8_error().valid_up_to();
            let line = 1 + e.as_bytes()[..byte].iter().filter(|b| **b == b'\n').count();
            LoreError::NotUtf8 {
                path: path.to_path_buf(),
                line,
                byte,
            }
        })?;
        docs.push(LoreDocument::parse_with(&relative, &text, format, config));
    }
    Ok(docs)
}

/// A block of the source: a heading (level 1–6) or a paragraph-like text.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Block {
    Heading(u8, String),
    Text(String),
}

/// A configuration that cannot loop or produce empty chunks.
fn sane(config: &ChunkConfig) -> ChunkConfig {
    let max_words = config.max_words.max(1);
    ChunkConfig {
        target_words: config.target_words.clamp(1, max_words),
        max_words,
        overlap_words: config.overlap_words.min(max_words / 2),
        max_chars: config.max_chars.max(16),
    }
}

fn content_hash(source: &str, format: Format, config: &ChunkConfig) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(CHUNKER_VERSION.as_bytes());
    let settings = format!(
        "\n{format:?} {} {} {} {}\n",
        config.target_words, config.max_words, config.overlap_words, config.max_chars
    );
    hasher.update(settings.as_bytes());
    hasher.update(source.as_bytes());
    hasher.finalize().into()
}

fn file_stem(path: &str) -> String {
    let stem = Path::new(path)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(path);
    let title = normalize(stem);
    if title.is_empty() {
        path.to_owned()
    } else {
        title
    }
}

/// Collapses runs of whitespace into one space and trims.
fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn word_count(text: &str) -> usize {
    text.split_whitespace().count()
}

/// The trail of a section: the title, then the headings open above it (the
/// first heading is not repeated when it is the title).
fn trail(title: &str, stack: &[(u8, String)]) -> Vec<String> {
    let mut trail = vec![title.to_owned()];
    let skip = usize::from(stack.first().is_some_and(|(_, h)| h == title));
    trail.extend(stack.iter().skip(skip).map(|(_, h)| h.clone()));
    trail
}

/// Paragraphs, list items, quotes, code and table rows of a Markdown text,
/// with its headings; front matter and raw HTML are skipped.
fn markdown_blocks(source: &str) -> Vec<Block> {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_YAML_STYLE_METADATA_BLOCKS
        | Options::ENABLE_PLUSES_DELIMITED_METADATA_BLOCKS;
    let mut blocks = Vec::new();
    let mut text = String::new();
    let mut heading: Option<(u8, String)> = None;
    let mut skipping = 0usize;
    let mut bullet = false;

    fn flush(text: &mut String, bullet: &mut bool, blocks: &mut Vec<Block>) {
        let t = normalize(text);
        text.clear();
        if !t.is_empty() {
            blocks.push(Block::Text(if *bullet { format!("- {t}") } else { t }));
            *bullet = false;
        }
    }

    for event in Parser::new_ext(source, options) {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                flush(&mut text, &mut bullet, &mut blocks);
                heading = Some((level as u8, String::new()));
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((level, h)) = heading.take() {
                    let h: String = normalize(&h).chars().take(MAX_HEADING_CHARS).collect();
                    if !h.is_empty() {
                        blocks.push(Block::Heading(level, h));
                    }
                }
            }
            Event::Start(Tag::MetadataBlock(_) | Tag::HtmlBlock) => {
                flush(&mut text, &mut bullet, &mut blocks);
                skipping += 1;
            }
            Event::End(TagEnd::MetadataBlock(_) | TagEnd::HtmlBlock) => {
                skipping = skipping.saturating_sub(1);
            }
            Event::Start(Tag::Item) => {
                flush(&mut text, &mut bullet, &mut blocks);
                bullet = true;
            }
            Event::Start(Tag::TableCell) if !text.trim().is_empty() => {
                text.push_str(" | ");
            }
            Event::Start(
                Tag::Paragraph
                | Tag::BlockQuote(_)
                | Tag::CodeBlock(_)
                | Tag::List(_)
                | Tag::Table(_)
                | Tag::TableHead
                | Tag::TableRow
                | Tag::FootnoteDefinition(_)
                | Tag::DefinitionList
                | Tag::DefinitionListTitle
                | Tag::DefinitionListDefinition,
            )
            | Event::End(
                TagEnd::Paragraph
                | TagEnd::BlockQuote(_)
                | TagEnd::CodeBlock
                | TagEnd::List(_)
                | TagEnd::Item
                | TagEnd::Table
                | TagEnd::TableHead
                | TagEnd::TableRow
                | TagEnd::FootnoteDefinition
                | TagEnd::DefinitionList
                | TagEnd::DefinitionListTitle
                | TagEnd::DefinitionListDefinition,
            )
            | Event::Rule => flush(&mut text, &mut bullet, &mut blocks),
            Event::Text(t) | Event::Code(t) | Event::InlineMath(t) | Event::DisplayMath(t) => {
                if skipping > 0 {
                    continue;
                }
                match heading.as_mut() {
                    Some((_, h)) => h.push_str(&t),
                    None => text.push_str(&t),
                }
            }
            Event::SoftBreak | Event::HardBreak => match heading.as_mut() {
                Some((_, h)) => h.push(' '),
                None => text.push(' '),
            },
            _ => {}
        }
    }
    flush(&mut text, &mut bullet, &mut blocks);
    blocks
}

/// Paragraphs of a plain text: runs of non-blank lines.
fn text_blocks(source: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut paragraph = String::new();
    for line in source.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            let t = normalize(&paragraph);
            if !t.is_empty() {
                blocks.push(Block::Text(t));
            }
            paragraph.clear();
        } else {
            paragraph.push_str(line);
            paragraph.push(' ');
        }
    }
    blocks
}

fn fits(words: usize, chars: usize, config: &ChunkConfig) -> bool {
    words <= config.max_words && chars <= config.max_chars
}

/// Joins two pieces of a chunk body: list items by a line break, anything
/// else by a blank line.
fn separator(prev: &str, next: &str) -> &'static str {
    if prev.starts_with("- ") && next.starts_with("- ") {
        "\n"
    } else {
        "\n\n"
    }
}

/// Packs the paragraphs of one section into chunks appended to `out`.
fn pack_section(
    trail: &[String],
    paragraphs: &[String],
    config: &ChunkConfig,
    out: &mut Vec<LoreChunk>,
) {
    let mut body = String::new();
    let mut words = 0usize;
    let emit = |body: &mut String, words: &mut usize, out: &mut Vec<LoreChunk>| {
        if !body.trim().is_empty() {
            out.push(LoreChunk {
                ordinal: u32::try_from(out.len()).unwrap_or(u32::MAX),
                trail: trail.to_vec(),
                body: std::mem::take(body),
            });
        }
        body.clear();
        *words = 0;
    };
    for paragraph in paragraphs {
        let pieces = if fits(word_count(paragraph), paragraph.len(), config) {
            vec![paragraph.clone()]
        } else {
            split_paragraph(paragraph, config)
        };
        for piece in pieces {
            let piece_words = word_count(&piece);
            let joined_chars = body.len() + 2 + piece.len();
            if !body.is_empty()
                && (words >= config.target_words
                    || !fits(words + piece_words, joined_chars, config))
            {
                emit(&mut body, &mut words, out);
            }
            if !body.is_empty() {
                body.push_str(separator(&body, &piece));
            }
            body.push_str(&piece);
            words += piece_words;
            // a split paragraph's pieces are chunks of their own
            if piece_words >= config.target_words {
                emit(&mut body, &mut words, out);
            }
        }
    }
    emit(&mut body, &mut words, out);
}

/// Sentences of `text` (UAX #29), trimmed; a sentence too long for a chunk is
/// cut at word boundaries (and a word too long, at character boundaries).
fn sentences(text: &str, config: &ChunkConfig) -> Vec<String> {
    let mut out = Vec::new();
    for sentence in text.split_sentence_bounds() {
        let sentence = sentence.trim();
        if sentence.is_empty() {
            continue;
        }
        if fits(word_count(sentence), sentence.len(), config) {
            out.push(sentence.to_owned());
            continue;
        }
        let mut piece = String::new();
        let mut piece_words = 0usize;
        for word in sentence.split_whitespace() {
            for part in char_pieces(word, config.max_chars) {
                if !piece.is_empty() && !fits(piece_words + 1, piece.len() + 1 + part.len(), config)
                {
                    out.push(std::mem::take(&mut piece));
                    piece_words = 0;
                }
                if !piece.is_empty() {
                    piece.push(' ');
                }
                piece.push_str(part);
                piece_words += 1;
            }
        }
        if !piece.is_empty() {
            out.push(piece);
        }
    }
    out
}

/// `word` cut into pieces of at most `max` bytes, at character boundaries.
fn char_pieces(word: &str, max: usize) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut end = 0;
    for (i, c) in word.char_indices() {
        if i + c.len_utf8() - start > max && end > start {
            pieces.push(&word[start..end]);
            start = end;
        }
        end = i + c.len_utf8();
    }
    if end > start {
        pieces.push(&word[start..end]);
    }
    pieces
}

/// Splits a paragraph too long for one chunk into balanced pieces at sentence
/// boundaries, each after the first starting with the previous piece's last
/// sentences (up to `overlap_words`, not counted towards the piece's share).
fn split_paragraph(text: &str, config: &ChunkConfig) -> Vec<String> {
    let sentences = sentences(text, config);
    let total: usize = sentences.iter().map(|s| word_count(s)).sum();
    let count = total.div_ceil(config.target_words).max(1);
    let goal = total.div_ceil(count);

    let mut out = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    // sentences and words of `current` that are not overlap
    let mut fresh = 0usize;
    let mut fresh_words = 0usize;
    let size = |v: &[&str]| -> (usize, usize) {
        let words = v.iter().map(|s| word_count(s)).sum();
        let chars = v
            .iter()
            .map(|s| s.len() + 1)
            .sum::<usize>()
            .saturating_sub(1);
        (words, chars)
    };
    for sentence in &sentences {
        let (words, chars) = size(&current);
        let grown = fits(
            words + word_count(sentence),
            chars + 1 + sentence.len(),
            config,
        );
        if fresh > 0 && (fresh_words >= goal || !grown) {
            out.push(current.join(" "));
            let mut overlap: Vec<&str> = Vec::new();
            let mut overlap_words = 0;
            for s in current.iter().rev().take(current.len().saturating_sub(1)) {
                let w = word_count(s);
                if overlap_words + w > config.overlap_words {
                    break;
                }
                overlap_words += w;
                overlap.insert(0, s);
            }
            current = overlap;
            fresh = 0;
            fresh_words = 0;
            let (words, chars) = size(&current);
            if !fits(
                words + word_count(sentence),
                chars + 1 + sentence.len(),
                config,
            ) {
                current.clear();
            }
        }
        current.push(sentence);
        fresh += 1;
        fresh_words += word_count(sentence);
    }
    if fresh > 0 {
        out.push(current.join(" "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` distinct sentences of eight words each.
    fn sentences_text(n: usize, tag: &str) -> String {
        (0..n)
            .map(|i| format!("The {tag} sentence number {i} ends right here."))
            .collect::<Vec<_>>()
            .join(" ")
    }

    const HISTORY: &str = "# Valley history\n\n\
        The valley was settled by river folk.\n\n\
        ## The flood\n\n\
        In the spring the river rose over the mill.\n\n\
        ### After the water\n\n\
        - The mill was rebuilt.\n\
        - The dyke was raised.\n\n\
        ## The fair\n\n\
        Every autumn the square fills with stalls.\n";

    #[test]
    fn chunks_carry_their_heading_trail() {
        let doc = LoreDocument::parse("history.md", HISTORY);
        assert_eq!(doc.title, "Valley history");
        let trails: Vec<String> = doc.chunks.iter().map(LoreChunk::trail_text).collect();
        assert_eq!(
            trails,
            [
                "Valley history",
                "Valley history > The flood",
                "Valley history > The flood > After the water",
                "Valley history > The fair",
            ]
        );
        assert_eq!(
            doc.chunks[2].body,
            "- The mill was rebuilt.\n- The dyke was raised."
        );
        let ordinals: Vec<u32> = doc.chunks.iter().map(|c| c.ordinal).collect();
        assert_eq!(ordinals, [0, 1, 2, 3]);
    }

    #[test]
    fn the_title_falls_back_to_the_file_name_and_leads_every_trail() {
        let doc = LoreDocument::parse("places/old_mill.md", "Intro text.\n\n## Wheel\n\nIt turns.");
        assert_eq!(doc.title, "Wheel", "the first heading is the title");
        let doc = LoreDocument::parse("places/old_mill.md", "Just a paragraph.");
        assert_eq!(doc.title, "old_mill");
        assert_eq!(doc.chunks[0].trail, ["old_mill"]);
        let doc = LoreDocument::parse("a.md", "## Mill\n\nA.\n\n## Well\n\nB.");
        assert_eq!(doc.chunks[1].trail_text(), "Mill > Well");
    }

    #[test]
    fn plain_text_files_have_paragraphs_and_no_headings() {
        let doc = LoreDocument::parse(
            "notes.txt",
            "# not a heading\nstill the same paragraph\n\n\nSecond.",
        );
        assert_eq!(doc.title, "notes");
        assert_eq!(doc.chunks.len(), 1);
        assert_eq!(
            doc.chunks[0].body,
            "# not a heading still the same paragraph\n\nSecond."
        );
    }

    #[test]
    fn short_paragraphs_are_packed_up_to_the_target() {
        // 30 paragraphs of 16 words: chunks of 160 words (10 paragraphs)
        let para = sentences_text(2, "packed");
        let text = vec![para; 30].join("\n\n");
        let doc = LoreDocument::parse("p.md", &text);
        let sizes: Vec<usize> = doc.chunks.iter().map(LoreChunk::words).collect();
        assert_eq!(sizes, [160, 160, 160]);
    }

    #[test]
    fn chunks_stay_within_bounds_and_are_never_empty() {
        let config = ChunkConfig::default();
        let mut text = String::from("# Big\n\n");
        for n in [1, 3, 14, 25, 40, 60, 7, 100] {
            text.push_str(&sentences_text(n, "bounded"));
            text.push_str("\n\n");
        }
        text.push_str("## Empty section\n\n## Word soup\n\n");
        text.push_str(&"word ".repeat(1000));
        text.push_str("\n\n## Giant word\n\n");
        text.push_str(&"x".repeat(10_000));
        text.push_str("\n\n<div>raw html is skipped</div>\n");
        let doc = LoreDocument::parse("big.md", &text);
        assert!(doc.chunks.len() > 5);
        for c in &doc.chunks {
            assert!(!c.body.trim().is_empty(), "empty chunk {c:?}");
            assert!(c.words() <= config.max_words, "{} words", c.words());
            assert!(c.body.len() <= config.max_chars, "{} chars", c.body.len());
            assert!(c.stored_text().len() <= 16_000);
        }
        assert!(doc.chunks.iter().all(|c| !c.body.contains("raw html")));
        // every sentence made it into some chunk
        for n in 0..100 {
            let s = format!("The bounded sentence number {n} ends right here.");
            assert!(doc.chunks.iter().any(|c| c.body.contains(&s)), "{s} lost");
        }
        let xs: usize = doc.chunks.iter().map(|c| c.body.matches('x').count()).sum();
        assert_eq!(xs, 10_000, "the giant word is cut, not lost");
    }

    #[test]
    fn long_paragraphs_split_at_sentences_with_overlap() {
        // one paragraph of 60 sentences × 8 words = 480 words: 3 pieces of ~160
        let text = format!("# Long\n\n{}", sentences_text(60, "split"));
        let doc = LoreDocument::parse("long.md", &text);
        assert_eq!(doc.chunks.len(), 3);
        for c in &doc.chunks {
            assert!(
                c.body.ends_with("ends right here."),
                "cut mid-sentence: {}",
                c.body
            );
            assert!(c.words() >= 120 && c.words() <= 200, "{} words", c.words());
        }
        for pair in doc.chunks.windows(2) {
            let last_sentences: Vec<&str> = pair[0]
                .body
                .split_sentence_bounds()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            let first_of_next = pair[1]
                .body
                .split_sentence_bounds()
                .map(str::trim)
                .find(|s| !s.is_empty())
                .unwrap_or_default();
            assert!(
                last_sentences[last_sentences.len() - 3..].contains(&first_of_next),
                "the next piece starts with the end of the previous one"
            );
        }
    }

    #[test]
    fn chunking_is_deterministic_and_the_hash_follows_the_content() {
        let a = LoreDocument::parse("history.md", HISTORY);
        let b = LoreDocument::parse("history.md", HISTORY);
        assert_eq!(a, b);
        let changed = LoreDocument::parse("history.md", &HISTORY.replace("mill", "barn"));
        assert_ne!(a.content_hash, changed.content_hash);
        let rechunked = LoreDocument::parse_with(
            "history.md",
            HISTORY,
            Format::Markdown,
            &ChunkConfig {
                target_words: 50,
                ..ChunkConfig::default()
            },
        );
        assert_ne!(
            a.content_hash, rechunked.content_hash,
            "chunking is part of the hash"
        );
    }

    #[test]
    fn stored_text_round_trips() {
        let doc = LoreDocument::parse("history.md", HISTORY);
        let (row, chunks) = doc.rows();
        assert_eq!(row.content_hash.len(), 32);
        assert_eq!(chunks.len(), doc.chunks.len());
        for (c, r) in doc.chunks.iter().zip(&chunks) {
            let (trail, body) = split_stored_text(&r.text);
            assert_eq!(trail, c.trail_text());
            assert_eq!(body, c.body);
        }
    }

    #[test]
    fn front_matter_tables_and_code_are_handled() {
        let text = "---\nauthor: someone\n---\n# Inn\n\n| Dish | Price |\n| --- | --- |\n| Stew | 3 |\n\n```\nsign  over   the door\n```\n";
        let doc = LoreDocument::parse("inn.md", text);
        assert_eq!(doc.title, "Inn");
        assert!(!doc.chunks[0].body.contains("author"));
        assert!(
            doc.chunks[0].body.contains("Stew | 3"),
            "{}",
            doc.chunks[0].body
        );
        assert!(doc.chunks[0].body.contains("sign over the door"));
    }

    #[test]
    fn load_dir_reads_lore_files_recursively_in_order() {
        let dir = std::env::temp_dir().join(format!("hearth-lore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("places")).expect("mkdir");
        std::fs::write(dir.join("b.md"), "# B\n\nBee.").expect("write");
        std::fs::write(dir.join("a.txt"), "Ay.").expect("write");
        std::fs::write(dir.join("places/mill.md"), "# Mill\n\nGrinds.").expect("write");
        std::fs::write(dir.join("ignored.json"), "{}").expect("write");
        std::fs::write(dir.join(".hidden.md"), "# Hidden").expect("write");
        let docs = load_dir(&dir).expect("loads");
        let paths: Vec<&str> = docs.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(paths, ["a.txt", "b.md", "places/mill.md"]);

        std::fs::write(dir.join("bad.md"), b"# Bad\n\nfine\n\xff\xfe").expect("write");
        let err = load_dir(&dir).expect_err("bad utf-8");
        let message = err.to_string();
        assert!(
            message.contains("bad.md") && message.contains("line 4"),
            "{message}"
        );
        let _ = std::fs::remove_dir_all(&dir);

        let err = load_dir(&dir).expect_err("missing");
        assert!(err.to_string().contains("hearth-lore"), "{err}");
    }
}
