// Runs the Vercel AI SDK against Parley: node run.mjs <base url> <provider> <model>, the key in
// PARLEY_API_KEY; <provider> is "responses" (the default `openai(model)`), "chat"
// (`openai.chat(model)`) or "anthropic". Prints one JSON object of what each call returned.
import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import { generateObject, generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

globalThis.AI_SDK_LOG_WARNINGS = false; // model-unknown notices, not results

const [base, provider, slug] = process.argv.slice(2);
const apiKey = process.env.PARLEY_API_KEY;
const openai = createOpenAI({ baseURL: `${base}/v1`, apiKey });
const anthropic = createAnthropic({ baseURL: `${base}/v1`, apiKey });
const model = { responses: openai(slug), chat: openai.chat(slug), anthropic: anthropic(slug) }[
  provider
];

const calls = [];
const getWeather = tool({
  description: "The current weather in a city",
  inputSchema: z.object({ city: z.string() }),
  execute: async ({ city }) => {
    calls.push(city);
    return `sunny in ${city}`;
  },
});
const prompt = "What is the weather in Paris?";

const generated = await generateText({
  model,
  tools: { getWeather },
  stopWhen: stepCountIs(5),
  prompt,
});

const streamed = streamText({ model, tools: { getWeather }, stopWhen: stepCountIs(5), prompt });
let streamedText = "";
for await (const delta of streamed.textStream) streamedText += delta;

const Person = z.object({
  name: z.string(),
  age: z.number().int().min(0).max(130),
  role: z.enum(["admin", "member", "guest"]),
  address: z.object({ city: z.string(), country: z.string() }),
  tags: z.array(z.string()),
});
const { object } = await generateObject({
  model,
  schema: Person,
  prompt: "Extract: Jane, 31, an admin living in Paris, France.",
});

console.log(
  JSON.stringify({
    calls,
    text: generated.text,
    steps: generated.steps.length,
    streamedText,
    streamedSteps: (await streamed.steps).length,
    streamedUsage: await streamed.totalUsage,
    object,
  }),
);
