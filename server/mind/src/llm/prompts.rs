//! The prompt templates designers edit: one TOML file per kind of cognition
//! under `assets/prompts/` (`importance.toml`, `conversation.toml`, …), each
//! with a system and a user template (MiniJinja, the Jinja2 syntax) and the
//! JSON Schema the answer must satisfy. Files missing from the directory
//! fall back to the copies built into the binary. Reads the directory once;
//! rendering is pure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use super::LlmError;

/// A kind of cognition the model is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Rate new memories 1–10, many per request.
    Importance,
    /// The day's broad plan at waking.
    DayPlan,
    /// An activity cut into 5–15-minute steps, a couple of hours ahead.
    Decompose,
    /// Whether something perceived changes the rest of the plan.
    React,
    /// The next line of a conversation (with an agent or a player).
    Conversation,
    /// What a reflection should ask about.
    FocalQuestions,
    /// Insights from evidence, citing memory ids.
    Insights,
    /// The end-of-day look back against the goals.
    Metacognition,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Importance,
        Kind::DayPlan,
        Kind::Decompose,
        Kind::React,
        Kind::Conversation,
        Kind::FocalQuestions,
        Kind::Insights,
        Kind::Metacognition,
    ];

    /// The file stem, the `llm_calls.kind` value and the metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Importance => "importance",
            Kind::DayPlan => "day_plan",
            Kind::Decompose => "decompose",
            Kind::React => "react",
            Kind::Conversation => "conversation",
            Kind::FocalQuestions => "focal_questions",
            Kind::Insights => "insights",
            Kind::Metacognition => "metacognition",
        }
    }

    /// The copy built into the binary.
    fn builtin(self) -> &'static str {
        match self {
            Kind::Importance => include_str!("../../../../assets/prompts/importance.toml"),
            Kind::DayPlan => include_str!("../../../../assets/prompts/day_plan.toml"),
            Kind::Decompose => include_str!("../../../../assets/prompts/decompose.toml"),
            Kind::React => include_str!("../../../../assets/prompts/react.toml"),
            Kind::Conversation => include_str!("../../../../assets/prompts/conversation.toml"),
            Kind::FocalQuestions => {
                include_str!("../../../../assets/prompts/focal_questions.toml")
            }
            Kind::Insights => include_str!("../../../../assets/prompts/insights.toml"),
            Kind::Metacognition => include_str!("../../../../assets/prompts/metacognition.toml"),
        }
    }
}

/// One prompt file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PromptFile {
    /// What the prompt is for (documentation only).
    #[serde(default)]
    #[allow(dead_code, reason = "read by people, kept so the file may carry it")]
    description: Option<String>,
    system: String,
    user: String,
    /// The answer's JSON Schema, as JSON text.
    schema: String,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    max_tokens: Option<u32>,
}

/// A loaded prompt.
#[derive(Debug)]
pub struct Prompt {
    pub kind: Kind,
    /// Where it came from (a path, or "built-in").
    pub source: String,
    pub schema: Value,
    validator: jsonschema::Validator,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
}

/// A prompt filled in for one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub system: String,
    pub user: String,
}

/// Every kind's prompt, compiled.
#[derive(Debug)]
pub struct Prompts {
    env: minijinja::Environment<'static>,
    prompts: BTreeMap<Kind, Prompt>,
}

impl Prompts {
    /// The built-in prompts.
    pub fn builtin() -> Result<Prompts, LlmError> {
        Self::load(None)
    }

    /// Each kind's `<kind>.toml` from `dir` when it is there, else the
    /// built-in one. An error names the file and what is wrong.
    pub fn load(dir: Option<&Path>) -> Result<Prompts, LlmError> {
        let mut env = minijinja::Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        // a value a designer's template names but a request lacks renders
        // empty, even through attributes (`agent.identity`)
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Chainable);
        let mut prompts = BTreeMap::new();
        for kind in Kind::ALL {
            let path: Option<PathBuf> = dir
                .map(|d| d.join(format!("{}.toml", kind.as_str())))
                .filter(|p| p.is_file());
            let (source, text) = match &path {
                Some(p) => (
                    p.display().to_string(),
                    std::fs::read_to_string(p).map_err(|e| LlmError::Prompt {
                        file: p.display().to_string(),
                        message: e.to_string(),
                    })?,
                ),
                None => (
                    format!("built-in {}.toml", kind.as_str()),
                    kind.builtin().to_owned(),
                ),
            };
            let bad = |message: String| LlmError::Prompt {
                file: source.clone(),
                message,
            };
            let file: PromptFile = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
            let schema: Value = serde_json::from_str(&file.schema)
                .map_err(|e| bad(format!("`schema` is not JSON: {e}")))?;
            if !schema.is_object() {
                return Err(bad("`schema` must be a JSON object".into()));
            }
            let validator = jsonschema::validator_for(&schema)
                .map_err(|e| bad(format!("`schema` is not a valid JSON Schema: {e}")))?;
            for (part, body) in [("system", file.system), ("user", file.user)] {
                env.add_template_owned(format!("{}.{part}", kind.as_str()), body)
                    .map_err(|e| bad(format!("`{part}`: {e}")))?;
            }
            prompts.insert(
                kind,
                Prompt {
                    kind,
                    source,
                    schema,
                    validator,
                    temperature: file.temperature,
                    max_tokens: file.max_tokens,
                },
            );
        }
        Ok(Prompts { env, prompts })
    }

    pub fn get(&self, kind: Kind) -> Option<&Prompt> {
        self.prompts.get(&kind)
    }

    /// Fills in `kind`'s templates with `context`.
    pub fn render(&self, kind: Kind, context: &Value) -> Result<Rendered, LlmError> {
        let part = |name: &str| -> Result<String, LlmError> {
            let t = self
                .env
                .get_template(&format!("{}.{name}", kind.as_str()))
                .map_err(|e| self.error(kind, e))?;
            t.render(context)
                .map(|s| s.trim().to_owned())
                .map_err(|e| self.error(kind, e))
        };
        Ok(Rendered {
            system: part("system")?,
            user: part("user")?,
        })
    }

    fn error(&self, kind: Kind, e: minijinja::Error) -> LlmError {
        LlmError::Prompt {
            file: self
                .prompts
                .get(&kind)
                .map_or_else(|| kind.as_str().to_owned(), |p| p.source.clone()),
            message: e.to_string(),
        }
    }
}

impl Prompt {
    /// The first way `value` breaks the schema, if any.
    pub fn violation(&self, value: &Value) -> Option<String> {
        self.validator
            .iter_errors(value)
            .next()
            .map(|e| format!("{} at {}", e, e.instance_path()))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_built_in_prompts_load_and_render() {
        let p = Prompts::builtin().expect("built-in prompts load");
        for kind in Kind::ALL {
            let prompt = p.get(kind).expect("every kind");
            assert_eq!(prompt.schema["type"], "object", "{kind:?}");
            // rendering with nothing filled in still works (missing values are empty)
            let r = p.render(kind, &json!({})).expect("renders");
            assert!(!r.user.is_empty(), "{kind:?}");
            let r = p
                .render(kind, &json!({"agent": {"identity": "You are Ada."}}))
                .expect("renders");
            assert!(
                r.system.contains("You are Ada.") || kind == Kind::Importance,
                "{kind:?}: {}",
                r.system
            );
        }
    }

    #[test]
    fn a_designers_file_overrides_and_a_broken_one_names_itself() {
        let dir = std::env::temp_dir().join(format!("hearth-prompts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(
            dir.join("importance.toml"),
            "system = \"Rate for {{ agent.name }}.\"\nuser = \"{% for m in memories %}{{ m.id }}: {{ m.text }}\\n{% endfor %}\"\nschema = '{\"type\": \"object\", \"required\": [\"ratings\"]}'\n",
        )
        .expect("write");
        let p = Prompts::load(Some(&dir)).expect("loads");
        let r = p
            .render(
                Kind::Importance,
                &json!({"agent": {"name": "Ada"}, "memories": [{"id": 3, "text": "a fire"}]}),
            )
            .expect("renders");
        assert_eq!(r.system, "Rate for Ada.");
        assert_eq!(r.user, "3: a fire");
        let prompt = p.get(Kind::Importance).expect("importance");
        assert!(prompt.violation(&json!({"ratings": []})).is_none());
        assert!(prompt.violation(&json!({})).is_some());

        std::fs::write(
            dir.join("insights.toml"),
            "system = \"{% if %}\"\nuser = \"\"\nschema = '{}'\n",
        )
        .expect("write");
        let e = Prompts::load(Some(&dir)).expect_err("broken template");
        assert!(e.to_string().contains("insights.toml"), "{e}");
        std::fs::write(
            dir.join("insights.toml"),
            "system = \"\"\nuser = \"\"\nschema = 'nope'\n",
        )
        .expect("write");
        let e = Prompts::load(Some(&dir)).expect_err("bad schema");
        assert!(e.to_string().contains("schema"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
